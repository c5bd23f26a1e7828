// Stub of the CoreFoundation types metal-cpp uses (compile check only).
#pragma once
#include <TargetConditionals.h>
#include <dispatch/dispatch.h>
#include <math.h>  // the real umbrella header pulls in math.h (INFINITY)
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef double CFTimeInterval;
typedef const void* CFTypeRef;
typedef long CFIndex;
typedef const struct __CFString* CFStringRef;
typedef struct { CFIndex location; CFIndex length; } CFRange;
void CFRelease(CFTypeRef cf);
CFTypeRef CFRetain(CFTypeRef cf);
#ifdef __cplusplus
}
#endif
// Apple's CFString.h routes constant strings through the compiler builtin, which clang has on every target.
#define __CFStringMakeConstantString(cStr) __builtin___CFStringMakeConstantString(cStr)
#define CFSTR(cStr) __CFStringMakeConstantString("" cStr "")
