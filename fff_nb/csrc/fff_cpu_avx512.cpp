// The CPU kernels for AVX-512 (F, DQ, BW, VL), with AVX2, FMA and F16C: 64-byte vectors. Empty off x86-64.
#include "fff_cpu.h"
#ifdef FFF_X86
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
#define FFF_ISA avx512
#define FFF_VBYTES 64
#include "fff_cpu_isa.h"
#endif
