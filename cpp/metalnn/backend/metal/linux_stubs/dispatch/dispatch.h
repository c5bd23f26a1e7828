// Stub of the libdispatch object types metal-cpp passes through (compile check only).
#pragma once
typedef struct dispatch_queue_s* dispatch_queue_t;
typedef struct dispatch_data_s* dispatch_data_t;
