// tree.h: the scalar maths of an FFF tree, shared by every kernel (CPU here, CUDA via FFF_HD).
//
// A tree of L levels has N = 2^L - 1 nodes in heap order (children of n: 2n+1 left, 2n+2 right); n_trees trees are
// stacked one after another in X (n_trees*N, nIn), Y (n_trees*N, nOut) and the optional bias b (n_trees*N).
// Per token and tree:  n = 0;  repeat L times:  z = <x, X[n]> + b[n];  y += act(z) * Y[n];  n = 2n + 1 + (z > 0)
// z == 0 and NaN go left (NaN then propagates into y through act(z)). Accumulation is in fp32 for fp16/bf16.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FFF_HD __host__ __device__ __forceinline__
#else
#define FFF_HD inline
#endif

namespace fff {

// The node coefficient: 0 = identity (the simplified FFF), 1 = exact-erf GELU (UltraFastBERT). Same ints in the op schema.
enum Act : int64_t { kIdentity = 0, kGelu = 1 };

FFF_HD float erf_(float v) { return erff(v); }
FFF_HD double erf_(double v) { return erf(v); }
FFF_HD float exp_(float v) { return expf(v); }
FFF_HD double exp_(double v) { return exp(v); }

// act(z): the coefficient of Y[n] in y.
template <typename A> FFF_HD A act_fwd(int64_t act, A z) {
  return act == kGelu ? A(0.5) * z * (A(1) + erf_(z * A(0.70710678118654752440))) : z;
}

// d act / dz: Phi(z) + z phi(z) for GELU (as torch's gelu backward), 1 for identity.
template <typename A> FFF_HD A act_grad(int64_t act, A z) {
  if (act != kGelu) return A(1);
  const A cdf = A(0.5) * (A(1) + erf_(z * A(0.70710678118654752440)));
  const A pdf = A(0.39894228040143267794) * exp_(A(-0.5) * z * z);
  return cdf + z * pdf;
}

// The child a token goes to: right only if z > 0 (so z == 0 and NaN go left).
template <typename A> FFF_HD int64_t child(int64_t node, A z) { return 2 * node + 1 + (z > A(0)); }

// Levels of a tree with n nodes, or -1 if n is not 2^L - 1.
FFF_HD int tree_levels(int64_t n) {
  int L = 0;
  while (L < 62 && ((int64_t(1) << L) - 1) < n) ++L;
  return ((int64_t(1) << L) - 1) == n && n > 0 ? L : -1;
}

}  // namespace fff
