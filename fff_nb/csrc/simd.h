// simd.h: the two inner loops every FFF kernel is made of, written once with GCC/Clang vector extensions.
// fff_cpu.cpp includes this file once per instruction set, inside its own namespace, after setting FFF_VBYTES (the
// vector width in bytes) and a matching `#pragma GCC target`; the compiler then emits AVX-512, AVX2 or SSE2 code.
// A is float or double. No include guard on purpose.

template <typename A> struct Vec {
  typedef A type __attribute__((vector_size(FFF_VBYTES), aligned(sizeof(A)), may_alias));  // unaligned loads allowed
  static constexpr int W = FFF_VBYTES / sizeof(A);
};
template <typename A> using V = typename Vec<A>::type;

template <typename A> FFF_INLINE V<A> vload(const A* p) { return *reinterpret_cast<const V<A>*>(p); }
template <typename A> FFF_INLINE void vstore(A* p, V<A> v) { *reinterpret_cast<V<A>*>(p) = v; }
template <typename A> FFF_INLINE A hsum(V<A> v) {
  A s = 0;
  for (int i = 0; i < Vec<A>::W; ++i) s += v[i];
  return s;
}

// out[t] = <u[t], v[t]> for NT independent pairs of length-n rows, interleaved so that the FMA chains of the
// NT tokens overlap (2 accumulators per pair).
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

// out = sum_i c[i] * rows[i] (length n), one pass over out: a block of 8 vectors of out stays in registers while
// the nr rows stream through.
template <typename A>
FFF_INLINE void combine(A* out, const A* const* rows, const A* c, int64_t nr, int64_t n) {
  constexpr int W = Vec<A>::W, U = 8;
  int64_t j = 0;
  for (; j + U * W <= n; j += U * W) {
    V<A> acc[U];
    for (int u = 0; u < U; ++u) acc[u] = V<A>{};
    for (int64_t i = 0; i < nr; ++i) {
      const A ci = c[i];
      const A* r = rows[i] + j;
      for (int u = 0; u < U; ++u) acc[u] += ci * vload(r + u * W);
    }
    for (int u = 0; u < U; ++u) vstore(out + j + u * W, acc[u]);
  }
  for (; j + W <= n; j += W) {
    V<A> acc = V<A>{};
    for (int64_t i = 0; i < nr; ++i) acc += c[i] * vload(rows[i] + j);
    vstore(out + j, acc);
  }
  for (; j < n; ++j) {
    A s = 0;
    for (int64_t i = 0; i < nr; ++i) s += c[i] * rows[i][j];
    out[j] = s;
  }
}
