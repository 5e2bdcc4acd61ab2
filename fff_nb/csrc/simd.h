// simd.h: the inner loops every FFF kernel is made of, written once with GCC/Clang vector extensions.
// fff_cpu_isa.h includes this file once per instruction set, inside its own namespace, after setting FFF_VBYTES (the
// vector width in bytes) and a matching `#pragma GCC target`; the compiler then emits AVX-512, AVX2 or baseline
// (SSE2 / NEON / scalar) code from the same source. A (the arithmetic) is float or double; S (the storage of the tree
// rows) is A, or fp16 / bf16 with A = float. No include guard on purpose.
// Also the float GELU of the forward's coefficients (vexp, verf, act_fwd_n): 12 scalar erff calls per token were
// 7-9% of a forward at UltraFastBERT's shape.

template <typename A> struct Vec {
  typedef A type __attribute__((vector_size(FFF_VBYTES), aligned(sizeof(A)), may_alias));  // unaligned loads allowed
  static constexpr int W = FFF_VBYTES / sizeof(A);
};
template <typename A> using V = typename Vec<A>::type;

template <typename A> FFF_INLINE V<A> vload(const A* p) { return *reinterpret_cast<const V<A>*>(p); }
template <typename A> FFF_INLINE void vstore(A* p, V<A> v) { *reinterpret_cast<V<A>*>(p) = v; }

// fp16 and bf16 rows (tree rows, and the token rows of a forward) are converted to and from float in registers as
// they are loaded and stored: they are read and written at half the bytes of float rows and never copied (converting
// each tree row into a float buffer first, scalar, and the token rows with torch before and after, made bf16 4-7x
// slower than float). Both directions round as torch's own conversions do (float -> bf16/fp16: to nearest even).
// H: a vector of W 16-bit values, the storage of one V<float>.
typedef uint16_t H __attribute__((vector_size(FFF_VBYTES / 2), aligned(2), may_alias));
typedef uint32_t U32 __attribute__((vector_size(FFF_VBYTES), aligned(4), may_alias));

// bf16 pairs: a full vector of 2W bf16 values, read as W 32-bit lanes, holds an even-indexed value in the low half of
// each lane and the next (odd-indexed) one in the high half. Each half becomes a float with one shift or one mask, no
// shuffle: where the order of the values does not matter (a dot product), or is restored on the way out (an
// accumulation into bf16, bf16_pack), the even and odd halves are computed as two float vectors. That is 2 integer
// ops per 2W values instead of 2 shuffles and 2 shifts (widening W values at a time), which made bf16 ~1.7x slower
// than float where the rows are in cache.
FFF_INLINE V<float> bf16_even(U32 w) { return reinterpret_cast<V<float>>(w << 16); }
FFF_INLINE V<float> bf16_odd(U32 w) { return reinterpret_cast<V<float>>(w & 0xFFFF0000u); }
// v rounded to bf16 (nearest even, NaN stays NaN, as c10::BFloat16), in the high half of each lane
FFF_INLINE U32 bf16_round(V<float> v) {
  const U32 u = reinterpret_cast<U32>(v), r = u + (((u >> 16) & 1) + 0x7FFF);
  return v != v ? U32{} + 0x7FC00000u : r;
}
FFF_INLINE U32 bf16_pack(V<float> even, V<float> odd) { return (bf16_round(even) >> 16) | (bf16_round(odd) & 0xFFFF0000u); }

// int8 rows (a compressed tree's, tree_forward_q): W values widened to W floats in registers (vpmovsxbd + vcvtdq2ps on
// x86), a quarter of the bytes of float rows; their scales are applied outside the inner loops (per row) or once per
// block of QB values (dots_q, combine_q).

// W values of storage type S at p as a vector of A; to_acc: one value (loop tails).
template <typename A, typename S> FFF_INLINE A to_acc(S v) { return static_cast<A>(v); }
template <typename A, typename S> FFF_INLINE V<A> vload_as(const S* p) {
  if constexpr (std::is_same_v<S, A>) return vload(p);
  else if constexpr (std::is_same_v<S, int8_t>) {  // (GCC's __builtin_convertvector of int8 does it value by value)
    static_assert(std::is_same_v<A, float>, "int8 rows, accumulated in float");
#if defined(FFF_X86) && FFF_VBYTES == 64
    return reinterpret_cast<V<float>>(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))));
#elif defined(FFF_X86) && FFF_VBYTES == 32
    return reinterpret_cast<V<float>>(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))));
#else
    static_assert(Vec<float>::W == 4, "the portable widening reads 4 int8 values");
    typedef int32_t I4 __attribute__((vector_size(16)));
    int32_t w;
    std::memcpy(&w, p, 4);
    const I4 v = ((I4{} + w) << I4{24, 16, 8, 0}) >> 24;  // each lane's byte, sign-extended (little-endian)
    return __builtin_convertvector(v, V<float>);
#endif
  } else {
    static_assert(std::is_same_v<A, float> && sizeof(S) == 2, "fp16 and bf16 rows, accumulated in float");
    const H h = *reinterpret_cast<const H*>(p);
    if constexpr (std::is_same_v<S, c10::BFloat16>) {  // a bf16 is the top half of a float's bits
#if defined(FFF_X86) && FFF_VBYTES == 64  // (one vpmovzxwd; GCC widens the two halves apart and joins them)
      return reinterpret_cast<V<float>>(_mm512_slli_epi32(_mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(h)), 16));
#elif defined(FFF_X86) && FFF_VBYTES == 32
      return reinterpret_cast<V<float>>(_mm256_slli_epi32(_mm256_cvtepu16_epi32(reinterpret_cast<__m128i>(h)), 16));
#else
      return reinterpret_cast<V<float>>(__builtin_convertvector(h, U32) << 16);
#endif
    } else {
#if defined(FFF_X86) && FFF_VBYTES == 64
      return reinterpret_cast<V<float>>(_mm512_cvtph_ps(reinterpret_cast<__m256i>(h)));
#elif defined(FFF_X86) && FFF_VBYTES == 32
      return reinterpret_cast<V<float>>(_mm256_cvtph_ps(reinterpret_cast<__m128i>(h)));
#else
      V<float> v;
      for (int i = 0; i < Vec<float>::W; ++i) v[i] = static_cast<float>(p[i]);
      return v;
#endif
    }
  }
}

// A float vector as W values of the 16-bit type O, rounded to nearest even; NaN stays NaN (c10's conversions).
template <typename O> FFF_INLINE H narrow(V<float> v) {
  if constexpr (std::is_same_v<O, c10::BFloat16>) {
    return __builtin_convertvector(bf16_round(v) >> 16, H);
  } else {
#if defined(FFF_X86) && FFF_VBYTES == 64
    return reinterpret_cast<H>(_mm512_cvtps_ph(reinterpret_cast<__m512>(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(FFF_X86) && FFF_VBYTES == 32
    return reinterpret_cast<H>(_mm256_cvtps_ph(reinterpret_cast<__m256>(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
    H h;
    for (int i = 0; i < Vec<float>::W; ++i) h[i] = static_cast<O>(v[i]).x;
    return h;
#endif
  }
}

// Store a vector of A at p as storage type O.
template <typename A, typename O> FFF_INLINE void vstore_as(O* p, V<A> v) {
  if constexpr (std::is_same_v<O, A>) vstore(p, v);
  else *reinterpret_cast<H*>(p) = narrow<O>(v);
}

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

// vstore_as with a non-temporal store (p aligned to the stored vector's size), where the instruction set has one.
template <typename A, typename O> FFF_INLINE void vstore_nt_as(O* p, V<A> v) {
  if constexpr (std::is_same_v<O, A>) vstore_nt(p, v);
  else {
#if FFF_VBYTES == 64
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), reinterpret_cast<__m256i>(narrow<O>(v)));
#elif FFF_VBYTES == 32
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), reinterpret_cast<__m128i>(narrow<O>(v)));
#else
    vstore_as<A>(p, v);
#endif
  }
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
// tokens overlap (2 accumulators per pair). u and v may be stored as SU and SV (converted to A as loaded).
template <typename A, int NT, typename SU, typename SV>
FFF_INLINE void dots(const SU* const* u, const SV* const* v, int64_t n, A* out) {
  constexpr int W = Vec<A>::W;
  V<A> a0[NT], a1[NT];
  for (int t = 0; t < NT; ++t) a0[t] = a1[t] = V<A>{};
  int64_t j = 0;
  if constexpr (std::is_same_v<SU, c10::BFloat16> && std::is_same_v<SV, c10::BFloat16>)
    for (; j + 2 * W <= n; j += 2 * W)  // bf16 pairs: even halves into a0, odd into a1
      for (int t = 0; t < NT; ++t) {
        const U32 p = *reinterpret_cast<const U32*>(u[t] + j), q = *reinterpret_cast<const U32*>(v[t] + j);
        a0[t] += bf16_even(p) * bf16_even(q);
        a1[t] += bf16_odd(p) * bf16_odd(q);
      }
  for (; j + 2 * W <= n; j += 2 * W)
    for (int t = 0; t < NT; ++t) {
      a0[t] += vload_as<A>(u[t] + j) * vload_as<A>(v[t] + j);
      a1[t] += vload_as<A>(u[t] + j + W) * vload_as<A>(v[t] + j + W);
    }
  for (; j + W <= n; j += W)
    for (int t = 0; t < NT; ++t) a0[t] += vload_as<A>(u[t] + j) * vload_as<A>(v[t] + j);
  for (int t = 0; t < NT; ++t) {
    A s = hsum<A>(a0[t] + a1[t]);
    for (int64_t k = j; k < n; ++k) s += to_acc<A>(u[t][k]) * to_acc<A>(v[t][k]);
    out[t] = s;
  }
}

// out[t] = sum_i c[t][i] * rows[t][i] (length n) for NT outputs, in one pass over each output: a block of 8 vectors
// stays in registers while that output's nr rows stream through. The column block is the outer loop, so rows that
// neighbouring outputs share (the top of the tree) are read from L1 after the first output loads them.
// With STREAM, the full vector blocks of out are written with non-temporal stores (out rows must be aligned). The rows
// may be stored as S, out as O.
template <typename A, int NT, bool STREAM = false, typename O, typename S>
FFF_INLINE void combine(O* const* out, const S* const* const* rows, const A* const* c, int64_t nr, int64_t n) {
  constexpr int W = Vec<A>::W, U = 8;
  int64_t j = 0;
  if constexpr (std::is_same_v<S, c10::BFloat16> && std::is_same_v<O, c10::BFloat16>)
    for (; j + U * W <= n; j += U * W)  // bf16 pairs: U/2 vectors of 2W values, their even and odd halves apart
      for (int t = 0; t < NT; ++t) {
        V<A> ev[U / 2], od[U / 2];
        for (int u = 0; u < U / 2; ++u) ev[u] = od[u] = V<A>{};
        for (int64_t i = 0; i < nr; ++i) {
          const A ci = c[t][i];
          const S* r = rows[t][i] + j;
          for (int u = 0; u < U / 2; ++u) {
            const U32 w = *reinterpret_cast<const U32*>(r + u * 2 * W);
            ev[u] += ci * bf16_even(w);
            od[u] += ci * bf16_odd(w);
          }
        }
        for (int u = 0; u < U / 2; ++u) {
          const V<float> packed = reinterpret_cast<V<float>>(bf16_pack(ev[u], od[u]));
          if constexpr (STREAM) vstore_nt(reinterpret_cast<float*>(out[t] + j + u * 2 * W), packed);
          else vstore(reinterpret_cast<float*>(out[t] + j + u * 2 * W), packed);
        }
      }
  for (; j + U * W <= n; j += U * W)
    for (int t = 0; t < NT; ++t) {
      V<A> acc[U];
      for (int u = 0; u < U; ++u) acc[u] = V<A>{};
      for (int64_t i = 0; i < nr; ++i) {
        const A ci = c[t][i];
        const S* r = rows[t][i] + j;
        for (int u = 0; u < U; ++u) acc[u] += ci * vload_as<A>(r + u * W);
      }
      for (int u = 0; u < U; ++u) {
        if constexpr (STREAM) vstore_nt_as<A>(out[t] + j + u * W, acc[u]);
        else vstore_as<A>(out[t] + j + u * W, acc[u]);
      }
    }
  for (; j + W <= n; j += W)
    for (int t = 0; t < NT; ++t) {
      V<A> acc = V<A>{};
      for (int64_t i = 0; i < nr; ++i) acc += c[t][i] * vload_as<A>(rows[t][i] + j);
      vstore_as<A>(out[t] + j, acc);
    }
  for (; j < n; ++j)
    for (int t = 0; t < NT; ++t) {
      A s = 0;
      for (int64_t i = 0; i < nr; ++i) s += c[t][i] * to_acc<A>(rows[t][i][j]);
      out[t][j] = static_cast<O>(s);
    }
}

// dots for int8 rows v with one scale per block of QB values (s[t][b] for values [b QB, (b + 1) QB) of v[t]):
// out[t] = sum_b s[t][b] <u[t], v[t]> over block b. Each block's partial sum is a vector, scaled by one multiply-add.
template <typename A, int NT, int QB, typename SU>
FFF_INLINE void dots_q(const SU* const* u, const int8_t* const* v, const float* const* s, int64_t n, A* out) {
  constexpr int W = Vec<A>::W, NV = QB / W;  // vectors per block (2, 4 or 8 for QB = 32)
  static_assert(QB % (2 * W) == 0, "a block is an even number of vectors");
  V<A> a[NT];
  for (int t = 0; t < NT; ++t) a[t] = V<A>{};
  int64_t j = 0;
  for (; j + QB <= n; j += QB)
    for (int t = 0; t < NT; ++t) {
      V<A> p0{}, p1{};
      for (int q = 0; q < NV; q += 2) {
        p0 += vload_as<A>(u[t] + j + q * W) * vload_as<A>(v[t] + j + q * W);
        p1 += vload_as<A>(u[t] + j + (q + 1) * W) * vload_as<A>(v[t] + j + (q + 1) * W);
      }
      a[t] += s[t][j / QB] * (p0 + p1);
    }
  for (int t = 0; t < NT; ++t) {
    A r = hsum<A>(a[t]), p = 0;
    for (int64_t k = j; k < n; ++k) p += to_acc<A>(u[t][k]) * to_acc<A>(v[t][k]);  // the last, partial block
    out[t] = j < n ? r + s[t][j / QB] * p : r;
  }
}

// combine for int8 rows with one scale per block of QB values (scales[t][i]: row rows[t][i]'s): the coefficient of a
// row times its block's scale, a scalar per block and row, multiplies the block's vectors.
template <typename A, int NT, int QB, bool STREAM = false, typename O>
FFF_INLINE void combine_q(O* const* out, const int8_t* const* const* rows, const float* const* const* scales,
                          const A* const* c, int64_t nr, int64_t n) {
  constexpr int W = Vec<A>::W, U = 8, NB = U * W / QB;  // blocks per column block
  static_assert((U * W) % QB == 0 && QB % W == 0, "a column block is whole blocks, a block whole vectors");
  int64_t j = 0;
  for (; j + U * W <= n; j += U * W)
    for (int t = 0; t < NT; ++t) {
      V<A> acc[U];
      for (int u = 0; u < U; ++u) acc[u] = V<A>{};
      for (int64_t i = 0; i < nr; ++i) {
        const int8_t* r = rows[t][i] + j;
        const float* sc = scales[t][i] + j / QB;
        A cs[NB];
        for (int q = 0; q < NB; ++q) cs[q] = c[t][i] * sc[q];
        for (int u = 0; u < U; ++u) acc[u] += cs[u * W / QB] * vload_as<A>(r + u * W);
      }
      for (int u = 0; u < U; ++u) {
        if constexpr (STREAM) vstore_nt_as<A>(out[t] + j + u * W, acc[u]);
        else vstore_as<A>(out[t] + j + u * W, acc[u]);
      }
    }
  for (; j + W <= n; j += W)  // (W divides QB: a vector lies in one block)
    for (int t = 0; t < NT; ++t) {
      V<A> acc = V<A>{};
      for (int64_t i = 0; i < nr; ++i) acc += (c[t][i] * scales[t][i][j / QB]) * vload_as<A>(rows[t][i] + j);
      vstore_as<A>(out[t] + j, acc);
    }
  for (; j < n; ++j)
    for (int t = 0; t < NT; ++t) {
      A s = 0;
      for (int64_t i = 0; i < nr; ++i) s += c[t][i] * scales[t][i][j / QB] * to_acc<A>(rows[t][i][j]);
      out[t][j] = static_cast<O>(s);
    }
}

// int8 rows times int16 tokens (a compressed tree's walk with row scales, x86): integer multiply-adds instead of
// widening each int8 value to a float. A vector of 2W int8 values, read as 2W/2 16-bit lanes, holds an even-indexed
// value in the low byte of each lane and the next one in the high byte: two shifts and one shift give both as int16,
// sign-extended, without a shuffle. The token's chunk of kXQ = 2W values is stored with its evens first, then its
// odds (quantize_x16), so that pmaddwd (AVX-512BW/AVX2) multiplies matching pairs and adds them into 32-bit lanes.
// Every product and sum is an exact integer: AVX-512 and AVX2 give the same dot products.
#if defined(FFF_X86) && FFF_VBYTES >= 32
#define FFF_XQ 1
constexpr int64_t kXQ = FFF_VBYTES;       // int8 values per chunk (one vector)
constexpr int64_t kXQGroup = 128;         // chunks summed in 32-bit lanes before converting to float: each chunk adds
                                          // at most 2 * 2 * 32767 * 127 < 2^24 to a lane, so 128 stay below 2^31
typedef int16_t VI __attribute__((vector_size(FFF_VBYTES), aligned(1), may_alias));  // 16-bit lanes (loads unaligned)
typedef int32_t VI32 __attribute__((vector_size(FFF_VBYTES)));
FFF_INLINE VI vi_load(const void* p) { return *reinterpret_cast<const VI*>(p); }
FFF_INLINE VI vi_even(VI w) { return (w << 8) >> 8; }  // the low byte of each lane, sign-extended (arithmetic shift)
FFF_INLINE VI vi_odd(VI w) { return w >> 8; }          // the high byte
// acc + the sums of adjacent products a[2i] b[2i] + a[2i+1] b[2i+1] in 32-bit lanes (pmaddwd: no vector-extension form)
FFF_INLINE VI32 vi_madd(VI32 acc, VI a, VI b) {
#if FFF_VBYTES == 64
  return acc + reinterpret_cast<VI32>(_mm512_madd_epi16(reinterpret_cast<__m512i>(a), reinterpret_cast<__m512i>(b)));
#else
  return acc + reinterpret_cast<VI32>(_mm256_madd_epi16(reinterpret_cast<__m256i>(a), reinterpret_cast<__m256i>(b)));
#endif
}

// q[0, nq) = x[0, nq) as int16 steps of s = max |x[0, n)| / 32767 (returned), rounded to nearest, each kXQ chunk
// evens first; nq = n rounded down to whole chunks. Returns -1 (q untouched) if x has an inf or NaN.
FFF_INLINE float quantize_x16(const float* x, int64_t n, int64_t nq, int16_t* q) {
  // max |x| on the bits: without the sign bit, a float's bits order as its values do, and inf and NaN are the largest
  U32 mb{};
  int64_t j = 0;
  for (; j + Vec<float>::W <= n; j += Vec<float>::W) {
    const U32 a = reinterpret_cast<U32>(vload(x + j)) & 0x7FFFFFFFu;
    mb = a > mb ? a : mb;
  }
  uint32_t mu = 0;
  for (int i = 0; i < Vec<float>::W; ++i) mu = std::max(mu, mb[i]);
  for (; j < n; ++j) {
    uint32_t a;
    std::memcpy(&a, x + j, 4);
    mu = std::max(mu, a & 0x7FFFFFFFu);
  }
  if (mu >= 0x7F800000u) return -1.f;
  float m;
  std::memcpy(&m, &mu, 4);
  const float s = m / 32767.f, inv = m > 0 ? 32767.f / m : 0.f;
  typedef int32_t I32 __attribute__((vector_size(FFF_VBYTES)));
  typedef int16_t I16 __attribute__((vector_size(FFF_VBYTES / 2), aligned(2), may_alias));
  const auto round16 = [&](V<float> v) {  // v * inv to the nearest int16 (even on ties): + 1.5 * 2^23 puts it in the low bits
    const V<float> r = v * inv + 12582912.f;
    return __builtin_convertvector(reinterpret_cast<I32>(r) - 0x4B400000, I16);
  };
  constexpr int W = Vec<float>::W;
  for (int64_t c = 0; c < nq; c += kXQ)  // a chunk is 4 float vectors: evens and odds of each pair of them
    for (int h = 0; h < 2; ++h) {
      const V<float> a = vload(x + c + 2 * h * W), b = vload(x + c + (2 * h + 1) * W);
#if FFF_VBYTES == 64
      const V<float> e = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      const V<float> o = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
#else
      const V<float> e = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
      const V<float> o = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
#endif
      *reinterpret_cast<I16*>(q + c + h * W) = round16(e);
      *reinterpret_cast<I16*>(q + c + kXQ / 2 + h * W) = round16(o);
    }
  return s;
}

// out[t] = sum_j q[t][j] v[t][j] over j in [0, nq) (nq a multiple of kXQ), as floats, for NT pairs.
template <int NT> FFF_INLINE void dots_x16(const int16_t* const* q, const int8_t* const* v, int64_t nq, float* out) {
  V<float> f[NT];
  for (int t = 0; t < NT; ++t) f[t] = V<float>{};
  for (int64_t g = 0; g < nq; g += kXQGroup * kXQ) {
    const int64_t ge = std::min(nq, g + kXQGroup * kXQ);
    VI32 a[NT];
    for (int t = 0; t < NT; ++t) a[t] = VI32{};
    for (int64_t c = g; c < ge; c += kXQ)
      for (int t = 0; t < NT; ++t) {
        const VI w = vi_load(v[t] + c);
        a[t] = vi_madd(a[t], vi_even(w), vi_load(q[t] + c));
        a[t] = vi_madd(a[t], vi_odd(w), vi_load(q[t] + c + kXQ / 2));
      }
    for (int t = 0; t < NT; ++t) f[t] += __builtin_convertvector(a[t], V<float>);
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum<float>(f[t]);
}
#endif

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
