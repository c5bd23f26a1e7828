// Stub: IOSurface is an opaque reference for metal-cpp's purposes (compile check only).
#pragma once
typedef struct __IOSurface* IOSurfaceRef;
