// The CPU kernels for AVX2 with FMA and F16C: 32-byte vectors. Empty off x86-64.
#include "fff_cpu.h"
#ifdef FFF_X86
#pragma GCC target("avx2,fma,f16c")
#define FFF_ISA avx2
#define FFF_VBYTES 32
#include "fff_cpu_isa.h"
#endif
