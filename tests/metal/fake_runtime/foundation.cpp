// Fake Foundation classes metal-cpp hands to the host code: NSString, NSError, NSArray.
#include <cstring>
#include <string>

#include "runtime.h"

namespace fakert {

String* new_string(const std::string& text) {
  String* s = make<String>(class_named("NSString"));
  s->text = text;
  return s;
}

Error::~Error() {
  if (domain) release(domain);
  if (description) release(description);
}

Error* new_error(const std::string& domain, long code, const std::string& description) {
  Error* e = make<Error>(class_named("NSError"));
  e->code = code;
  e->domain = new_string(domain);
  e->description = new_string(description);
  return e;
}

Array::~Array() {
  for (Object* o : items) release(o);
}

Array* new_array() { return make<Array>(class_named("NSArray")); }

namespace {

// ---- NSString (UTF-8 only: every encoding metal-cpp passes is treated as UTF-8/ASCII) ----
void* str_string(Class, SEL) { return autorelease(new_string("")); }
void* str_stringWithString(Class, SEL, String* other) {
  return autorelease(new_string(other ? checked<String>(other, "+[NSString stringWithString:]")->text : ""));
}
void* str_stringWithCString(Class, SEL, const char* text, unsigned long) {
  if (!text) validation_error("+[NSString stringWithCString:encoding:]: NULL C string");
  return autorelease(new_string(text));
}
void* str_initWithCString(String* self, SEL, const char* text, unsigned long) {
  if (!text) validation_error("-[NSString initWithCString:encoding:]: NULL C string");
  self->text = text;
  return self;
}
void* str_initWithString(String* self, SEL, String* other) {
  self->text = checked<String>(other, "-[NSString initWithString:]")->text;
  return self;
}
const char* str_utf8(String* self, SEL) { return self->text.c_str(); }
const char* str_cstring(String* self, SEL, unsigned long) { return self->text.c_str(); }
unsigned long str_length(String* self, SEL) { return self->text.size(); }
unsigned long str_lengthOfBytes(String* self, SEL, unsigned long) { return self->text.size(); }
unsigned long str_maxLengthOfBytes(String* self, SEL, unsigned long) { return self->text.size() * 3; }
unsigned short str_characterAtIndex(String* self, SEL, unsigned long i) {
  if (i >= self->text.size()) validation_error("-[NSString characterAtIndex:]: index %lu beyond %zu", i, self->text.size());
  return (unsigned char)self->text[i];
}
bool str_isEqualToString(String* self, SEL, String* other) { return other && self->text == other->text; }
void* str_description(String* self, SEL) { return self; }
void* str_stringByAppendingString(String* self, SEL, String* other) {
  return autorelease(new_string(self->text + checked<String>(other, "-[NSString stringByAppendingString:]")->text));
}

// ---- NSError ----
void* err_localizedDescription(Error* self, SEL) { return self->description; }
void* err_domain(Error* self, SEL) { return self->domain; }
long err_code(Error* self, SEL) { return self->code; }
void* err_nil(Error*, SEL) { return nullptr; }

// ---- NSArray ----
unsigned long arr_count(Array* self, SEL) { return self->items.size(); }
void* arr_objectAtIndex(Array* self, SEL, unsigned long i) {
  if (i >= self->items.size())
    validation_error("-[NSArray objectAtIndex:]: index %lu beyond bounds [0 .. %zu)", i, self->items.size());
  return self->items[i];
}
void* arr_array(Class, SEL) { return autorelease(new_array()); }

}  // namespace

void register_foundation() {
  Class root = define_class("NSObject", nullptr);
  Class str = define_class("NSString", root);
  str->make = make_erased<String>;
  add_class_method(str, "string", (void*)str_string);
  add_class_method(str, "stringWithString:", (void*)str_stringWithString);
  add_class_method(str, "stringWithCString:encoding:", (void*)str_stringWithCString);
  add_method(str, "initWithCString:encoding:", (void*)str_initWithCString);
  add_method(str, "initWithString:", (void*)str_initWithString);
  add_method(str, "UTF8String", (void*)str_utf8);
  add_method(str, "cStringUsingEncoding:", (void*)str_cstring);
  add_method(str, "length", (void*)str_length);
  add_method(str, "lengthOfBytesUsingEncoding:", (void*)str_lengthOfBytes);
  add_method(str, "maximumLengthOfBytesUsingEncoding:", (void*)str_maxLengthOfBytes);
  add_method(str, "characterAtIndex:", (void*)str_characterAtIndex);
  add_method(str, "isEqualToString:", (void*)str_isEqualToString);
  add_method(str, "description", (void*)str_description);
  add_method(str, "stringByAppendingString:", (void*)str_stringByAppendingString);

  Class err = define_class("NSError", root);
  err->make = make_erased<Error>;
  add_method(err, "localizedDescription", (void*)err_localizedDescription);
  add_method(err, "description", (void*)err_localizedDescription);
  add_method(err, "domain", (void*)err_domain);
  add_method(err, "code", (void*)err_code);
  add_method(err, "userInfo", (void*)err_nil);
  add_method(err, "localizedFailureReason", (void*)err_nil);
  add_method(err, "localizedRecoverySuggestion", (void*)err_nil);
  add_method(err, "localizedRecoveryOptions", (void*)err_nil);

  Class arr = define_class("NSArray", root);
  arr->make = make_erased<Array>;
  add_class_method(arr, "array", (void*)arr_array);
  add_method(arr, "count", (void*)arr_count);
  add_method(arr, "objectAtIndex:", (void*)arr_objectAtIndex);
}

}  // namespace fakert
