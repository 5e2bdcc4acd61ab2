// fff_cpu.h: what every translation unit of the CPU tree op shares: the argument structs of the kernels and the
// kernels' declarations, one set per instruction set. The kernels themselves (simd.h, fff_cpu_impl.h) are compiled
// in their own file per instruction set (fff_cpu_avx512.cpp, fff_cpu_avx2.cpp, fff_cpu_baseline.cpp), so that ninja
// builds them in parallel; fff_cpu.cpp picks one at load time and registers the ops.
#pragma once
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <type_traits>
#include <vector>
#include "tree.h"

#define FFF_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FFF_X86 1
#endif

// FFF_BINDING_ONLY: register no ops and export only the pybind11 binding `tree_forward_direct`, so that a build of
// other sources or switches (fff_nb.ops.build_variant) loads in the same process as the library and can be timed
// against it side by side: the way to measure a change to the kernels before it replaces them.

namespace fff_nb {

// The validated arguments of a tree op, as raw pointers (X, Y, b in storage type S).
// A compressed tree (tree_forward_q: rows stored as int8 or bf16, tokens float32) also has: the float32 scales of its
// int8 rows (sX, sY: one per row when qb == 0, else one per block of qb = kQB values of a row, row-major) and its
// float32 bias bf (b stays null: an int8 bias would lose what the int8 rows keep).
template <typename S> struct TreeArgs {
  const S *X, *Y, *b;
  int64_t nIn, nOut, N, K;  // row widths, nodes per tree, trees
  int L;                    // levels
  int64_t act;
  const float *sX = nullptr, *sY = nullptr, *bf = nullptr;
  int64_t qb = 0;
  // int8 rows with row scales, x86: room for the tokens as int16 (fff_cpu_impl.h's int16_tokens), nq values per token
  // (a whole number of kXQ-value chunks; the rest of a row is read from x as floats), and their scales xqs (-1: a
  // token with an inf or NaN, walked in float). Null: the float tokens are used.
  int16_t* xq = nullptr;
  float* xqs = nullptr;
  int64_t nq = 0;
};
constexpr int kQB = 32;  // values per scale of block-quantised int8 rows (llama.cpp's Q8_0)

template <typename A> struct LeafArgs {  // a leaf FFF (see leaf_forward in fff_cpu_impl.h)
  const A *W, *c, *w1, *b1, *w2, *b2;    // routers (N, I) and their biases; leaves' w1 (L, l, I), b1, w2 (L, l, O), b2
  int64_t I, O, l, d, act;               // widths, leaf width, depth; act: 0 identity, 1 erf GELU, 2 ReLU
};

// Whether a forward of B tokens (rows of x of x_row_bytes) through trees of L levels on nth threads gives the
// threads subtrees instead of slices of the batch (fff_cpu_impl.h's forward_split says why in this range).
inline bool splits_tree(int64_t B, int64_t x_row_bytes, int L, int nth) {
  return nth > 1 && L >= 2 && B >= 64 * nth && B / nth * x_row_bytes >= (int64_t(2) << 20) &&
         (L >= 62 || (B >> L) < nth);
}

// The kernels of one instruction set (defined in fff_cpu_impl.h; instantiated in fff_cpu_isa.h for S = float, double,
// Half, BFloat16 with A their accumulation type and tokens XT = S; the forward also for the compressed rows S = int8_t,
// BFloat16 with float tokens XT; and leaf_forward for S = A = float, double).
#define FFF_DECLARE_KERNELS(isa)                                                                                     \
  namespace isa {                                                                                                    \
  template <typename S, typename A, typename XT> void forward(const TreeArgs<S>& T, const XT* x, XT* y, int64_t B);  \
  template <typename S, typename A>                                                                                  \
  void backward(const TreeArgs<S>& T, const S* g, const S* x, S* dx, S* dX, S* dY, S* db, int64_t B);                \
  template <typename S, typename A> void leaf_forward(const LeafArgs<A>& T, const A* x, A* y, int64_t B);            \
  }
#ifdef FFF_X86
FFF_DECLARE_KERNELS(avx512)
FFF_DECLARE_KERNELS(avx2)
#endif
FFF_DECLARE_KERNELS(baseline)

}  // namespace fff_nb
