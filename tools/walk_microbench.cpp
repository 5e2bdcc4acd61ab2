// walk_microbench.cpp: the tree walk of the CPU kernel alone (fff_nb/csrc/simd.h's dots, 8-token tiles), outside
// torch, on the UltraFastBERT tree (4095 x 768 float32, 12 levels), for the "what bounds the walk" notes of 02_ops
// and 08_bench. Tokens are sorted by path, as the kernel's router orders them. Prints the best of
// 200 interleaved rounds, in ns per token and level, for:
//   walk            the kernel's loop: each level's rows follow from the last dot products
//   rows known      the same rows, read from a table (no dependence on the dot products)
//   rows in L1      every token dots its x with the root's row at every level
//   prefetch rows   the walk, each level's rows prefetched (all lines) before its dot products
//   prefetch kids   the walk, both children's rows prefetched a level ahead
// and each one's ratio to "rows in L1" (the same arithmetic and rows of x, the tree's rows never missing L1).
// Build and run (x86-64 with AVX-512):
//   g++ -O3 -std=c++17 tools/walk_microbench.cpp -o /tmp/walk_microbench && /tmp/walk_microbench 4096
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>
namespace c10 {  // stand-ins for the half types simd.h names (unused here)
struct BFloat16 { uint16_t x; operator float() const { return 0; } };
struct Half { uint16_t x; operator float() const { return 0; } };
}  // namespace c10
namespace fff { enum Act : int64_t { kIdentity = 0, kGelu = 1 }; template <typename A> inline A act_fwd(int64_t, A z) { return z; } }
#define FFF_INLINE inline __attribute__((always_inline))
#define FFF_X86 1
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
#define FFF_VBYTES 64
#include "../fff_nb/csrc/simd.h"

constexpr int L = 12, N = 4095, D = 768, NT = 8;
std::vector<float> X, x;
std::vector<int64_t> ref;  // each token's rows, level by level

enum Mode { kWalk, kKnown, kL1, kPfRows, kPfKids };
template <Mode M> void walk_all(const int64_t* tok, int64_t n) {
  for (int64_t i = 0; i + NT <= n; i += NT) {
    const float* xs[NT];
    int64_t nd[NT];
    for (int t = 0; t < NT; ++t) xs[t] = x.data() + tok[i + t] * D, nd[t] = 0;
    for (int l = 0; l < L; ++l) {
      const float* rp[NT];
      float lam[NT];
      for (int t = 0; t < NT; ++t)
        rp[t] = X.data() + (M == kKnown ? ref[tok[i + t] * L + l] : M == kL1 ? 0 : nd[t]) * D;
      if (M == kPfRows)
        for (int t = 0; t < NT; ++t)
          if (t == 0 || rp[t] != rp[t - 1]) for (int j = 0; j < D; j += 16) _mm_prefetch((const char*)(rp[t] + j), _MM_HINT_T0);
      if (M == kPfKids)
        for (int t = 0; t < NT; ++t)
          if (l + 1 < L && (t == 0 || rp[t] != rp[t - 1]))
            for (int j = 0; j < 2 * D; j += 16) _mm_prefetch((const char*)(X.data() + (2 * nd[t] + 1) * D + j), _MM_HINT_T1);
      dots<float, NT>(xs, rp, D, lam);
      for (int t = 0; t < NT; ++t) nd[t] = 2 * nd[t] + 1 + (lam[t] > 0);
    }
    for (int t = 0; t < NT; ++t) __asm__ volatile("" : : "r"(nd[t]));
  }
}
int main(int argc, char** argv) {
  const int B = argc > 1 ? atoi(argv[1]) : 4096;
  std::mt19937 g(0);
  std::normal_distribution<float> nd;
  X.resize(int64_t(N) * D), x.resize(int64_t(B) * D), ref.resize(int64_t(B) * L);
  for (auto& v : X) v = nd(g);
  for (auto& v : x) v = nd(g);
  std::vector<int64_t> tok(B);
  for (int i = 0; i < B; ++i) {
    tok[i] = i;
    for (int64_t l = 0, n = 0; l < L; ++l) {
      ref[i * L + l] = n;
      float z = 0;
      for (int j = 0; j < D; ++j) z += x[i * D + j] * X[n * D + j];
      n = 2 * n + 1 + (z > 0);
    }
  }
  std::sort(tok.begin(), tok.end(), [](int64_t a, int64_t b) {
    return std::lexicographical_compare(&ref[a * L], &ref[a * L + L], &ref[b * L], &ref[b * L + L]);
  });
  void (*fs[])(const int64_t*, int64_t) = {walk_all<kWalk>, walk_all<kKnown>, walk_all<kL1>, walk_all<kPfRows>,
                                           walk_all<kPfKids>};
  const char* names[] = {"walk", "rows known", "rows in L1", "prefetch rows", "prefetch kids"};
  constexpr int F = sizeof(names) / sizeof(names[0]);
  std::vector<double> best(F, 1e30);
  for (int r = 0; r < 200; ++r)
    for (int f = 0; f < F; ++f) {
      const auto t0 = std::chrono::steady_clock::now();
      fs[f](tok.data(), B);
      best[f] = std::min(best[f], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  printf("B=%d, tree 4095 x 768 float32, 12 levels, 8-token tiles; best of 200 rounds\n", B);
  for (int f = 0; f < F; ++f)
    printf("%-14s %6.2f ns per token and level  (%.3f us per token, x%.2f rows in L1)\n", names[f],
           best[f] / B / L * 1e9, best[f] / B * 1e6, best[f] / best[2]);
}
