// The portable CPU kernels: 16-byte generic vectors, lowered to SSE2, NEON or scalar code by the compiler.
#include "fff_cpu.h"
#define FFF_ISA baseline
#define FFF_VBYTES 16
#include "fff_cpu_isa.h"
