// Stub of the Objective-C runtime types and lookups metal-cpp uses (compile check only).
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
typedef struct objc_class* Class;
struct objc_object { Class isa; };
typedef struct objc_object* id;
typedef struct objc_selector* SEL;
typedef struct objc_object Protocol;
typedef id (*IMP)(id, SEL, ...);
typedef signed char BOOL;
#define YES ((BOOL)1)
#define NO ((BOOL)0)
#define Nil ((Class)0)

id objc_lookUpClass(const char* name);
Class objc_getClass(const char* name);
Protocol* objc_getProtocol(const char* name);
SEL sel_registerName(const char* name);
const char* sel_getName(SEL sel);
Class object_getClass(id obj);
BOOL class_respondsToSelector(Class cls, SEL sel);
#ifdef __cplusplus
}
#endif
