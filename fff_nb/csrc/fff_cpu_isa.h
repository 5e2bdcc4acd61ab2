// fff_cpu_isa.h: the body of one instruction set's translation unit: the inner loops (simd.h) and drivers
// (fff_cpu_impl.h) in namespace fff_nb::FFF_ISA, vectors of FFF_VBYTES bytes, and the instantiations fff_cpu.cpp calls.
// The including file sets FFF_ISA, FFF_VBYTES and the matching `#pragma GCC target` after including fff_cpu.h.
// No include guard on purpose.
namespace fff_nb {
namespace FFF_ISA {
#include "simd.h"
#include "fff_cpu_impl.h"

#define FFF_INSTANTIATE(S, A)                                                                                  \
  template void forward<S, A, S>(const TreeArgs<S>&, const S*, S*, int64_t);                                   \
  template void backward<S, A>(const TreeArgs<S>&, const S*, const S*, S*, S*, S*, S*, int64_t);
FFF_INSTANTIATE(float, float)
FFF_INSTANTIATE(double, double)
FFF_INSTANTIATE(c10::Half, float)
FFF_INSTANTIATE(c10::BFloat16, float)
#undef FFF_INSTANTIATE
template void forward<int8_t, float, float>(const TreeArgs<int8_t>&, const float*, float*, int64_t);  // compressed rows
template void forward<c10::BFloat16, float, float>(const TreeArgs<c10::BFloat16>&, const float*, float*, int64_t);
template void leaf_forward<float, float>(const LeafArgs<float>&, const float*, float*, int64_t);
template void leaf_forward<double, double>(const LeafArgs<double>&, const double*, double*, int64_t);
}  // namespace FFF_ISA
}  // namespace fff_nb
