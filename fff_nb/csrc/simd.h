// simd.h: the inner loops every FFF kernel is made of, written once with GCC/Clang vector extensions.
// fff_cpu.cpp includes this file once per instruction set, inside its own namespace, after setting FFF_VBYTES (the
// vector width in bytes) and a matching `#pragma GCC target`; the compiler then emits AVX-512, AVX2 or baseline
// (SSE2 / NEON / scalar) code from the same source. A is float or double. No include guard on purpose.
// Also the float GELU of the forward's coefficients (vexp, verf, act_fwd_n): 12 scalar erff calls per token were
// 7-9% of a forward at UltraFastBERT's shape.

template <typename A> struct Vec {
  typedef A type __attribute__((vector_size(FFF_VBYTES), aligned(sizeof(A)), may_alias));  // unaligned loads allowed
  static constexpr int W = FFF_VBYTES / sizeof(A);
};
template <typename A> using V = typename Vec<A>::type;

template <typename A> FFF_INLINE V<A> vload(const A* p) { return *reinterpret_cast<const V<A>*>(p); }
template <typename A> FFF_INLINE void vstore(A* p, V<A> v) { *reinterpret_cast<V<A>*>(p) = v; }

// Non-temporal store of a full vector to an aligned address (bypasses the caches, no read-for-ownership), where the
// instruction set has one; for outputs too big to stay in cache, so they do not evict the tree's rows.
template <typename A> FFF_INLINE void vstore_nt(A* p, V<A> v) {
#if FFF_VBYTES == 64
  if constexpr (sizeof(A) == 4) _mm512_stream_ps(reinterpret_cast<float*>(p), reinterpret_cast<__m512>(v));
  else _mm512_stream_pd(reinterpret_cast<double*>(p), reinterpret_cast<__m512d>(v));
#elif FFF_VBYTES == 32
  if constexpr (sizeof(A) == 4) _mm256_stream_ps(reinterpret_cast<float*>(p), reinterpret_cast<__m256>(v));
  else _mm256_stream_pd(reinterpret_cast<double*>(p), reinterpret_cast<__m256d>(v));
#else
  vstore(p, v);
#endif
}

// Horizontal sum by halving: log2(W) shuffles and adds (a loop over lanes costs ~2x more on the walk's critical path).
template <typename A> FFF_INLINE A hsum(V<A> v) {
  constexpr int W = Vec<A>::W;
  if constexpr (W == 16) {
    v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  } else if constexpr (W == 8) {
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5);
  } else if constexpr (W == 4) {
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1);
  }
  return v[0] + v[1];
}

// out[t] = <u[t], v[t]> for NT independent pairs of length-n rows, interleaved so that the FMA chains of the NT
// tokens overlap (2 accumulators per pair).
template <typename A, int NT>
FFF_INLINE void dots(const A* const* u, const A* const* v, int64_t n, A* out) {
  constexpr int W = Vec<A>::W;
  V<A> a0[NT], a1[NT];
  for (int t = 0; t < NT; ++t) a0[t] = a1[t] = V<A>{};
  int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W)
    for (int t = 0; t < NT; ++t) {
      a0[t] += vload(u[t] + j) * vload(v[t] + j);
      a1[t] += vload(u[t] + j + W) * vload(v[t] + j + W);
    }
  for (; j + W <= n; j += W)
    for (int t = 0; t < NT; ++t) a0[t] += vload(u[t] + j) * vload(v[t] + j);
  for (int t = 0; t < NT; ++t) {
    A s = hsum<A>(a0[t] + a1[t]);
    for (int64_t k = j; k < n; ++k) s += u[t][k] * v[t][k];
    out[t] = s;
  }
}

// out[t] = sum_i c[t][i] * rows[t][i] (length n) for NT outputs, in one pass over each output: a block of 8 vectors
// stays in registers while that output's nr rows stream through. The column block is the outer loop, so rows that
// neighbouring outputs share (the top of the tree) are read from L1 after the first output loads them.
// With STREAM, the full vector blocks of out are written with non-temporal stores (out rows must be aligned).
template <typename A, int NT, bool STREAM = false>
FFF_INLINE void combine(A* const* out, const A* const* const* rows, const A* const* c, int64_t nr, int64_t n) {
  constexpr int W = Vec<A>::W, U = 8;
  int64_t j = 0;
  for (; j + U * W <= n; j += U * W)
    for (int t = 0; t < NT; ++t) {
      V<A> acc[U];
      for (int u = 0; u < U; ++u) acc[u] = V<A>{};
      for (int64_t i = 0; i < nr; ++i) {
        const A ci = c[t][i];
        const A* r = rows[t][i] + j;
        for (int u = 0; u < U; ++u) acc[u] += ci * vload(r + u * W);
      }
      for (int u = 0; u < U; ++u) {
        if constexpr (STREAM) vstore_nt(out[t] + j + u * W, acc[u]);
        else vstore(out[t] + j + u * W, acc[u]);
      }
    }
  for (; j + W <= n; j += W)
    for (int t = 0; t < NT; ++t) {
      V<A> acc = V<A>{};
      for (int64_t i = 0; i < nr; ++i) acc += c[t][i] * vload(rows[t][i] + j);
      vstore(out[t] + j, acc);
    }
  for (; j < n; ++j)
    for (int t = 0; t < NT; ++t) {
      A s = 0;
      for (int64_t i = 0; i < nr; ++i) s += c[t][i] * rows[t][i][j];
      out[t][j] = s;
    }
}

// e^x for float vectors: Cephes' expf (x = n ln 2 + r, a degree-6 polynomial in r, times 2^n), x clamped to
// [-87, 88] so that 2^n stays a normal float; NaN stays NaN.
FFF_INLINE V<float> vexp(V<float> x) {
  typedef int32_t VI __attribute__((vector_size(FFF_VBYTES)));
  const V<float> zero{}, magic = zero + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  x = x < -87.0f ? zero - 87.0f : x;
  x = x > 88.0f ? zero + 88.0f : x;
  const V<float> fx = x * 1.44269504088896341f + magic, n = fx - magic;
  const V<float> r = x - n * 0.693359375f + n * 2.12194440e-4f;
  V<float> p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const VI e = ((reinterpret_cast<VI>(fx) - reinterpret_cast<VI>(magic)) + 127) << 23;
  return p * reinterpret_cast<V<float>>(e);
}

// erf for float vectors: Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), the formula of PyTorch's
// vectorised float erf, so the kernel's GELU rounds as F.gelu does on the CPU.
FFF_INLINE V<float> verf(V<float> x) {
  const V<float> zero{}, a = x < 0.0f ? zero - x : x, t = 1.0f / (a * 0.3275911f + 1.0f);
  V<float> y = t * 1.061405429f - 1.453152027f;
  y = y * t + 1.421413741f;
  y = y * t - 0.284496736f;
  y = y * t + 0.254829592f;
  const V<float> r = 1.0f - y * t * vexp(zero - a * a);
  return x < 0.0f ? zero - r : r;
}

// p[0, n) = act(p[0, n)) in place (tree.h's act_fwd). The float GELU is vectorised, its last partial vector
// zero-padded, so that every value takes the same formula wherever it sits.
template <typename A> FFF_INLINE void act_fwd_n(int64_t act, A* p, int64_t n) {
  if (act == fff::kIdentity) return;
  if constexpr (std::is_same_v<A, float>) {
    if (act == fff::kGelu) {
      constexpr int W = Vec<float>::W;
      for (int64_t j = 0; j < n; j += W) {
        const int64_t m = std::min<int64_t>(W, n - j);
        V<float> z{};
        std::memcpy(&z, p + j, m * sizeof(float));
        z = 0.5f * z * (1.0f + verf(z * 0.70710678118654752440f));
        std::memcpy(p + j, &z, m * sizeof(float));
      }
      return;
    }
  }
  for (int64_t j = 0; j < n; ++j) p[j] = fff::act_fwd(act, p[j]);
}
