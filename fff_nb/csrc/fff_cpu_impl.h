// fff_cpu_impl.h: forward and backward drivers of the CPU tree op: token tiles, sorting tokens by node so that a tile's
// tokens share the rows of the top of the tree, threads, deterministic gradient reductions.
// Included by fff_cpu_isa.h once per instruction set, after simd.h, inside that instruction set's namespace.
// S is the storage type of X, Y, b (float, double, Half, BFloat16); A the accumulation type (float or double). The
// token rows (x, y, grad_y, dx) and the gradients dX, dY, db are S too; sums are in A. Rows stored as S != A are
// converted in registers as they are loaded and stored (simd.h's vload_as, vstore_as). A compressed tree's forward
// (tree_forward_q) has rows S = int8_t (with scales) or BFloat16 and float tokens XT: the same walk and accumulation,
// the int8 rows' scales applied to each dot product and coefficient (per row) or per block (dots_q, combine_q).
// No include guard on purpose.

constexpr int kTile = 8;  // tokens walked together: 8 interleaved dot products hide the latency of each row's loads

// Calls f(std::integral_constant<int, nt>{}, i) on tiles [i, i+nt) covering [0, n): nt = NT, then NT/2, ..., 1.
template <int NT, typename F> FFF_INLINE void for_tiles(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + NT <= n; i += NT) f(std::integral_constant<int, NT>{}, i);
  if constexpr (NT > 1)
    if (i < n) for_tiles<NT / 2>(n - i, [&](auto nt, int64_t j) { f(nt, i + j); });
}

// Per-thread scratch, grown on demand and kept between calls (no allocation on the hot path).
template <typename S, typename A> struct Scratch {
  std::vector<int64_t> R, node, perm, tmp, cnt, pos;
  std::vector<A> Z, buf, buf2;
  std::vector<int64_t> Rs, nodes, perms, tmps, offs;  // forward_split's, shared by its threads
  std::vector<A> Zs;
  std::vector<const S*> P;  // row pointers
  std::vector<const float*> SP;  // their block scales (int8 rows with qb > 0)
  std::vector<int16_t> XQ, XQs;  // int16 tokens (int8 rows with row scales; XQs: forward_split's) and their scales
  std::vector<float> XS, XSs;
};


template <typename S, typename A> Scratch<S, A>& scratch() {
  static thread_local Scratch<S, A> s;
  return s;
}
template <typename Vt> FFF_INLINE auto* grow(Vt& v, int64_t n) {
  if ((int64_t)v.size() < n) v.resize(n);
  return v.data();
}

// Stable counting sort of the items i in [0, n) by key(i) in [0, nb): out gets item(i) grouped by key, in input order
// within a key; off (nb + 1) gets each key's offset in out; pos (nb) is scratch.
template <typename Key, typename Item>
FFF_INLINE void counting_sort(int64_t n, int64_t nb, Key&& key, Item&& item, int64_t* out, int64_t* off, int64_t* pos) {
  std::fill(off, off + nb + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++off[key(i) + 1];
  for (int64_t j = 0; j < nb; ++j) off[j + 1] += off[j];
  std::copy(off, off + nb, pos);
  for (int64_t i = 0; i < n; ++i) out[pos[key(i)]++] = item(i);
}

// Tokens per parallel chunk: enough work (~2^18 multiply-adds) to pay for waking a thread.
inline int64_t token_grain(int64_t work_per_token) {
  return std::max<int64_t>(4, (int64_t(1) << 18) / std::max<int64_t>(1, work_per_token));
}

// T with room for M tokens as int16 (T.xq, T.xqs, T.nq in q and sq), where the walk uses them: int8 rows with one
// scale per row, on x86, rows of at least one chunk. The walk of the first levels quantises each tile's tokens just
// before it reads them (Router::walk_tiles), so x is read once for both; later stages read the int16 tokens, half
// the bytes of x. The int16 step of a token is max |x| / 32767: its rounding error is at most 1/65534 of the token's
// largest value, far under the int8 rows' half step of 1/254 of a row's largest value.
template <typename S, typename XT>
TreeArgs<S> int16_tokens(TreeArgs<S> T, int64_t M, std::vector<int16_t>& q, std::vector<float>& sq) {
#if defined(FFF_XQ)
  if constexpr (std::is_same_v<S, int8_t> && std::is_same_v<XT, float>) {
    const int64_t nq = T.nIn / kXQ * kXQ;
    if (T.qb || nq == 0) return T;
    T.xq = grow(q, M * nq), T.xqs = grow(sq, M), T.nq = nq;
  }
#endif
  return T;
}

// Walk levels [l0, l1) of tree k for NT tokens (rows xs, stored as XT) from node[t]; visited rows and pre-activations
// z go to rows[t][k*L + l] and z[t][k*L + l].
// xq, sq: the tokens as int16 and their scales (T.xq set: int8 rows with row scales, x86).
template <typename S, typename A, int NT, typename XT>
FFF_INLINE void walk(const TreeArgs<S>& T, int64_t k, int l0, int l1, const XT* const* xs, int64_t* node,
                     int64_t* const* rows, A* const* z, const int16_t* const* xq = nullptr, const float* sq = nullptr) {
  for (int l = l0; l < l1; ++l) {
    const S* rp[NT];
    A lam[NT];
    for (int t = 0; t < NT; ++t) rp[t] = T.X + (k * T.N + node[t]) * T.nIn;
    if constexpr (std::is_same_v<S, int8_t>) {  // scaled int8 rows: per block inside the dot product, or per row after it
#if defined(FFF_XQ)
      if (xq) {  // integer dot products on the int16 tokens, the rest of the row (under one chunk) in float
        dots_x16<NT>(xq, rp, T.nq, lam);
        for (int t = 0; t < NT; ++t) {
          A r = 0;
          for (int64_t j = T.nq; j < T.nIn; ++j) r += static_cast<A>(xs[t][j]) * static_cast<A>(rp[t][j]);
          lam[t] = (lam[t] * sq[t] + r) * T.sX[k * T.N + node[t]];
        }
      } else
#endif
      if (T.qb) {
        const float* sp[NT];
        for (int t = 0; t < NT; ++t) sp[t] = T.sX + (k * T.N + node[t]) * ((T.nIn + kQB - 1) / kQB);
        dots_q<A, NT, kQB>(xs, rp, sp, T.nIn, lam);
      } else {
        dots<A, NT>(xs, rp, T.nIn, lam);
        for (int t = 0; t < NT; ++t) lam[t] *= T.sX[k * T.N + node[t]];
      }
    } else dots<A, NT>(xs, rp, T.nIn, lam);
    for (int t = 0; t < NT; ++t) {
      const int64_t r = k * T.N + node[t];
      const A zz = lam[t] + (T.b ? static_cast<A>(T.b[r]) : T.bf ? static_cast<A>(T.bf[r]) : A(0));
      rows[t][k * T.L + l] = r;
      z[t][k * T.L + l] = zz;
      node[t] = fff::child(node[t], zz);
    }
  }
}

// Route tokens x[0, M) down every tree: visited rows R and pre-activations Z (M x K*L, token-major), and in s.perm an
// order of the tokens in which neighbours share their path through the top Ts levels (Ts: the deepest level that
// still has >= TILE tokens per node on average). The walk goes in stages: levels [0, 3), [3, 6), ... below Ts, then
// [Ts, L). Before each stage but the first, the tokens are stably counting-sorted by their current node, so that each
// tile's tokens mostly visit the same rows in the next stage and read each once from memory instead of TILE times.
// Stages are scheduled depth first: a group of tokens that share a node and whose rows of x are too big for the L2
// cache (kBlockBytes) walks one stage, is split by node, and each part finishes (all its stages, then `done`, e.g.
// the combine) before the next part starts. A part small enough walks its remaining stages breadth first. So x is
// read from memory about twice per call instead of once per stage, and a part's subtree rows are read while they
// are hot. The token order is the one that sorting the whole batch before each stage gives; tiles just do not straddle
// two parts.
// With `from_dram` (set by a caller whose rows will mostly come from DRAM), an L2-sized part walks its stages level
// by level, all its tiles at one level before the next, prefetching the next tile's rows of X while a tile computes:
// the rows a tile needs are known a whole tile ahead instead of one dependent dot product ahead.
// `done(tok, n)` is called on each finished part (its tokens tok[0, n), in their final order) of the last tree.
constexpr int64_t kBlockBytes = int64_t(256) << 10;

template <typename S, typename A, int TILE, typename XT> struct Router {  // XT: the storage of x's rows
  const TreeArgs<S>& T;
  const XT* x;
  int64_t *R, *node, *tmp, *perm;
  A* Z;
  Scratch<S, A>& s;
  int64_t k = 0, KL;
  int bounds[64], nb = 0;  // stage boundaries: 0, 3, 6, ... (< Ts), Ts, L
  bool from_dram = false;

  Router(const TreeArgs<S>& T_, const XT* x_, int64_t M, int64_t* R_, A* Z_, Scratch<S, A>& s_)
      : Router(T_, x_, M, R_, Z_, grow(s_.node, M), grow(s_.perm, M), grow(s_.tmp, M), s_) {}
  // Tokens [0, M) whose nodes, order and sorting scratch are node_, perm_, tmp_ (M each; shared by the threads of
  // forward_split), the rest of the scratch s_ the calling thread's.
  Router(const TreeArgs<S>& T_, const XT* x_, int64_t M, int64_t* R_, A* Z_, int64_t* node_, int64_t* perm_,
         int64_t* tmp_, Scratch<S, A>& s_)
      : T(T_), x(x_), R(R_), node(node_), tmp(tmp_), perm(perm_), Z(Z_), s(s_), KL(T_.K * T_.L) {
    int Ts = 0;
    while (Ts + 1 < T.L && (M >> (Ts + 1)) >= TILE) ++Ts;
    bounds[nb++] = 0;
    for (int l = 3; l < Ts; l += 3) bounds[nb++] = l;
    if (Ts > 0) bounds[nb++] = Ts;
    bounds[nb++] = T.L;
  }

  // Prefetch (into L2) the rows of X that tokens tok[0, n) (n <= TILE) visit next, each distinct row once.
  FFF_INLINE void prefetch_next_rows(const int64_t* tok, int64_t n) {
    int64_t seen[TILE];
    int ns = 0;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t nd = node[tok[t]];
      if (std::find(seen, seen + ns, nd) != seen + ns) continue;
      seen[ns++] = nd;
      const char* p = reinterpret_cast<const char*>(T.X + (k * T.N + nd) * T.nIn);
      for (int64_t j = 0; j < T.nIn * (int64_t)sizeof(S); j += 64) __builtin_prefetch(p + j, 0, 2);
    }
  }

  // Walk levels [l0, l1) of tree k for tokens tok[0, n), in tiles of TILE neighbours: each tile all the levels, or
  // (`from_dram`, for a part that fits in L2) all the tiles one level at a time, the next tile's rows prefetched.
  void walk_stage(int l0, int l1, const int64_t* tok, int64_t n) {
    if (from_dram && l1 - l0 > 1 && n > TILE && n * T.nIn * (int64_t)sizeof(XT) <= 2 * kBlockBytes) {
      for (int l = l0; l < l1; ++l) walk_tiles(l, l + 1, tok, n, true);
    } else walk_tiles(l0, l1, tok, n, false);
  }
  void walk_tiles(int l0, int l1, const int64_t* tok, int64_t n, bool prefetch) {
    for_tiles<TILE>(n, [&](auto ntc, int64_t i) {
      constexpr int nt = decltype(ntc)::value;
      const XT* xs[nt];
      int64_t nd[nt], *rr[nt];
      A* zz[nt];
      for (int t = 0; t < nt; ++t) {
        const int64_t tk = tok[i + t];
        xs[t] = x + tk * T.nIn, nd[t] = node[tk], rr[t] = R + tk * KL, zz[t] = Z + tk * KL;
        // fetch the tile's token rows all at once (the dot loops would start 2*TILE streams at once, more than
        // the hardware prefetcher follows); non-temporal, so that rows of x used for one stage do not evict tree rows
        const bool q = T.xq && (k > 0 || l0 > 0);  // (the first levels quantise x below)
        const char* p = q ? reinterpret_cast<const char*>(T.xq + tk * T.nq) : reinterpret_cast<const char*>(xs[t]);
        const int64_t xb = q ? T.nq * 2 : T.nIn * (int64_t)sizeof(XT);
        if (!prefetch) for (int64_t j = 0; j < xb; j += 64) __builtin_prefetch(p + j, 0, 0);
      }
      if (prefetch && i + nt < n) prefetch_next_rows(tok + i + nt, std::min<int64_t>(TILE, n - i - nt));
#if defined(FFF_XQ)
      if constexpr (std::is_same_v<S, int8_t> && std::is_same_v<XT, float>) if (T.xq) {
        const int16_t* xq[nt];
        float sq[nt];
        bool finite = true;
        for (int t = 0; t < nt; ++t) {
          const int64_t tk = tok[i + t];
          if (k == 0 && l0 == 0) T.xqs[tk] = quantize_x16(x + tk * T.nIn, T.nIn, T.nq, T.xq + tk * T.nq);
          xq[t] = T.xq + tk * T.nq, sq[t] = T.xqs[tk], finite &= sq[t] >= 0;
        }
        if (finite) {
          walk<S, A, nt>(T, k, l0, l1, xs, nd, rr, zz, xq, sq);
          for (int t = 0; t < nt; ++t) node[tok[i + t]] = nd[t];
          return;
        }
      }
#endif
      walk<S, A, nt>(T, k, l0, l1, xs, nd, rr, zz);
      for (int t = 0; t < nt; ++t) node[tok[i + t]] = nd[t];
    });
  }

  // Stable counting sort of tok[0, n) by their node at level l, all in the subtree of node p at level la; cnt gets
  // the 2^(l - la) + 1 part offsets.
  void sort_by_node(int la, int64_t p, int l, int64_t* tok, int64_t n, int64_t* cnt) {
    const int64_t parts = int64_t(1) << (l - la), first = (p << (l - la)) + parts - 1;  // leftmost node below p
    int64_t* t2 = tmp + (tok - perm);
    counting_sort(n, parts, [&](int64_t i) { return node[tok[i]] - first; }, [&](int64_t i) { return tok[i]; }, t2, cnt,
                  grow(s.pos, parts));
    std::copy(t2, t2 + n, tok);
  }

  // Finish tokens tok[0, n), all at node p of level bounds[si].
  template <typename F> void run(int si, int64_t p, int64_t* tok, int64_t n, F&& done) {
    const int la = bounds[si];
    if (si + 2 >= nb || n * T.nIn * (int64_t)sizeof(XT) <= kBlockBytes) {  // breadth first
      for (int st = si; st + 1 < nb; ++st) {
        if (st > si) sort_by_node(la, p, bounds[st], tok, n, grow(s.cnt, (int64_t(1) << (bounds[st] - la)) + 1));
        walk_stage(bounds[st], bounds[st + 1], tok, n);
      }
      done(tok, n);
      return;
    }
    walk_stage(la, bounds[si + 1], tok, n);
    const int d = bounds[si + 1] - la;
    int64_t cnt[9];  // d <= 3: stages below Ts are 3 levels or fewer
    sort_by_node(la, p, bounds[si + 1], tok, n, cnt);
    for (int64_t j = 0; j < (int64_t(1) << d); ++j)
      if (cnt[j + 1] > cnt[j]) run(si + 1, (p << d) + (int64_t(1) << d) - 1 + j, tok + cnt[j], cnt[j + 1] - cnt[j], done);
  }
};

template <typename S, typename A, int TILE = kTile, typename XT, typename F>
void route(const TreeArgs<S>& T, const XT* x, int64_t M, int64_t* R, A* Z, Scratch<S, A>& s, F&& done, bool from_dram = false) {
  Router<S, A, TILE, XT> r(T, x, M, R, Z, s);
  r.from_dram = from_dram;
  for (r.k = 0; r.k < T.K; ++r.k) {
    for (int64_t i = 0; i < M; ++i) r.node[i] = 0, r.perm[i] = i;
    if (r.k + 1 < T.K) r.run(0, 0, r.perm, M, [](const int64_t*, int64_t) {});
    else r.run(0, 0, r.perm, M, done);
  }
}

// out[t] = sum_i c[t][i] * W[rows[t][i]] for the NT tokens of a tile (W: n-wide rows of storage type S); `stream`:
// write out with non-temporal stores (out rows aligned). `by_token`: one token's rows at a time instead of the whole
// tile's per column block, for rows that come from DRAM (see `forward`). `sq`: the block scales of int8 rows W
// (ceil(n / kQB) per row), or null (rows with one scale have it in c already).
template <typename S, typename A, int NT, typename O>
FFF_INLINE void combine_rows(const S* W, int64_t n, O* const* out, const int64_t* const* rows, const A* const* c,
                             int64_t KL, Scratch<S, A>& s, bool stream = false, bool by_token = false,
                             const float* sq = nullptr) {
  const S** P = grow(s.P, NT * KL);
  const S* const* rp[NT];
  for (int t = 0; t < NT; ++t) {
    for (int64_t i = 0; i < KL; ++i) P[t * KL + i] = W + rows[t][i] * n;
    rp[t] = P + t * KL;
  }
  if constexpr (std::is_same_v<S, int8_t>)
    if (sq) {
      const int64_t nb = (n + kQB - 1) / kQB;
      const float** SP = grow(s.SP, NT * KL);
      const float* const* sp[NT];
      for (int t = 0; t < NT; ++t) {
        for (int64_t i = 0; i < KL; ++i) SP[t * KL + i] = sq + rows[t][i] * nb;
        sp[t] = SP + t * KL;
      }
      if (by_token)
        for (int t = 0; t < NT; ++t) {
          if (stream) combine_q<A, 1, kQB, true>(out + t, rp + t, sp + t, c + t, KL, n);
          else combine_q<A, 1, kQB>(out + t, rp + t, sp + t, c + t, KL, n);
        }
      else if (stream) combine_q<A, NT, kQB, true>(out, rp, sp, c, KL, n);
      else combine_q<A, NT, kQB>(out, rp, sp, c, KL, n);
      return;
    }
  if (by_token)
    for (int t = 0; t < NT; ++t) {
      if (stream) combine<A, 1, true>(out + t, rp + t, c + t, KL, n);
      else combine<A, 1>(out + t, rp + t, c + t, KL, n);
    }
  else if (stream) combine<A, NT, true>(out, rp, c, KL, n);
  else combine<A, NT>(out, rp, c, KL, n);
}

// How a forward writes y and reads rows, for M tokens per thread.
struct ForwardPlan {
  bool stream, by_token, from_dram, prefetch_y = false;  // prefetch_y: the next tile's rows of Y, from cache or not
  template <typename S> ForwardPlan(const TreeArgs<S>& T, int64_t M, int64_t out_size = sizeof(S)) {  // (y's element)
    // an output bigger than L2 will not be read from cache anyway: stream it past the caches, so that it does not
    // evict the tree's rows (+7-9% at B >= 512)
    stream = M * T.nOut * out_size >= (int64_t(1) << 20) && (T.nOut * out_size) % FFF_VBYTES == 0;
    // Rows that come from DRAM (wide ones, or far more row bytes per call than L3 holds) are accumulated one token
    // at a time: a tile's 8 x 12 rows read a column block each in turn are ~100 interleaved streams, too many for
    // the hardware prefetcher; one token's 12 are not (+7-12% at UltraFastBERT's B=4096, +9-14% at widths 8192 and
    // 16384, B=64; no change where the rows are in cache, which the column-block order suits: -3% at B=16).
    // Rows under 32 KiB from DRAM are also prefetched a tile ahead, in the walk (see route) and here: the rows a tile
    // needs are known a whole tile ahead, not one dependent dot product ahead (+2-8% at UltraFastBERT's B >= 2048 on 1
    // thread, a few per cent at most on 2). Only there: with the tree in cache the prefetches fill L1 and cost more
    // than the latency they hide (-7 to -20% at B <= 1024).
    const int64_t row_bytes = T.nOut * (int64_t)sizeof(S), KL = T.K * T.L;
    const bool wide = row_bytes >= (int64_t(32) << 10), dram = M * KL * row_bytes >= (int64_t(64) << 20);
    by_token = wide || dram, from_dram = !wide && dram;
    // int8 rows are 128 bytes per row and column block: a tile's ~100 rows are too many short streams for the hardware
    // prefetcher wherever they come from. One token's rows at a time, and the next tile's rows prefetched, at every
    // batch (UltraFastBERT's tree, int8 with row scales, against the column-block order: +30-35% at B=512 and
    // +10-20% at B=4096 on 1 and 2 threads, and the same at B=64).
    if constexpr (std::is_same_v<S, int8_t>) by_token = prefetch_y = true;
  }
};

// The end of a forward for routed tokens: their coefficients act(z), then their rows of y. Tokens are indices into
// y (from y0, of element type O), R and Z (KL per token).
template <typename S, typename A, typename O = S> struct Finish {
  const TreeArgs<S>& T;
  O* y0;
  const int64_t* R;
  const A* Z;
  Scratch<S, A>& s;
  ForwardPlan plan;
  void operator()(const int64_t* tok, int64_t n) const {  // tokens tok[0, n)
    const int64_t KL = T.K * T.L, row_bytes = T.nOut * (int64_t)sizeof(S);
    A* cb = grow(s.buf, kTile * KL);  // a tile's coefficients act(z), side by side for the vectorised act
    for_tiles<kTile>(n, [&](auto ntc, int64_t i) {
      constexpr int nt = decltype(ntc)::value;
      O* out[nt];
      const int64_t* rows[nt];
      const A* c[nt];
      for (int t = 0; t < nt; ++t) {
        const int64_t tk = tok[i + t];
        out[t] = y0 + tk * T.nOut, rows[t] = R + tk * KL, c[t] = Z + tk * KL;
      }
      const bool row_scales = T.sY && !T.qb;  // int8 rows of Y with one scale each: the scale joins the coefficient
      if (T.act != fff::kIdentity || row_scales) {
        for (int t = 0; t < nt; ++t) std::copy(c[t], c[t] + KL, cb + t * KL), c[t] = cb + t * KL;
        act_fwd_n<A>(T.act, cb, nt * KL);
        if (row_scales)
          for (int t = 0; t < nt; ++t)
            for (int64_t j = 0; j < KL; ++j) cb[t * KL + j] *= T.sY[rows[t][j]];
      }
      if (plan.from_dram || plan.prefetch_y)  // the next tile's rows of Y, each (token, level) row that its left neighbour does not share
        for (int64_t t = i + nt; t < std::min<int64_t>(n, i + nt + kTile); ++t)
          for (int64_t j = 0; j < KL; ++j) {
            const int64_t r = R[tok[t] * KL + j];
            if (t > i + nt && R[tok[t - 1] * KL + j] == r) continue;
            const char* p = reinterpret_cast<const char*>(T.Y + r * T.nOut);
            for (int64_t q = 0; q < row_bytes; q += 64) __builtin_prefetch(p + q, 0, 2);
          }
      combine_rows<S, A, nt>(T.Y, T.nOut, out, rows, c, KL, s, plan.stream, plan.by_token, T.qb ? T.sY : nullptr);
    });
  }
};

// Forward on nth > 1 threads that split the tree, not the batch: all threads walk the top levels [0, ls) of a tree
// for a slice of the batch each; the tokens are then sorted by their node at level ls, and each thread finishes the
// tokens in its share (B / nth) of the sorted batch. So most rows below level ls are read by one core only (those of
// a subtree whose tokens straddle two shares by two), for about nth times as many tokens per node as a thread
// holding a slice of the batch would see: at UltraFastBERT's B=4096 on 2 threads a core reads ~12.5 MiB of tree rows
// per call instead of ~18.4 (half the batch visits almost the whole tree; 02_ops counts them). Returns false (nothing
// done) where the batch is not in its range (splits_tree, fff_cpu.h), because outside it the split costs more than
// it saves: below 2 MiB of x per thread, a thread's slice of x mostly stays in its caches between the top levels and
// the rest, and the other threads' tokens would not (-4 to -11% at UltraFastBERT's B=1024 on 2 threads); from 2
// tokens per node of the last level per thread (B >= nth 2^L), the tiles of a thread's slice already share most deep
// rows, and the extra stage, the serial sort and x fetched from the other core's cache cost more than the rows saved
// (-2 to -6% at B=8192). In the range, +1 to +11% at B=2048 to 6144 on 2 threads.
// y is the same, bit for bit, as on one thread: each token's sums are the same, whichever thread makes them.
template <typename S, typename A, typename XT>
bool forward_split(const TreeArgs<S>& T0, const XT* x, XT* y, int64_t B, int nth) {
  if (!splits_tree(B, T0.nIn * (int64_t)sizeof(XT), T0.L, nth)) return false;
  const int64_t KL = T0.K * T0.L;
  Scratch<S, A>& s0 = scratch<S, A>();  // the calling thread's; its Router below uses s0's other vectors
  const TreeArgs<S> T = int16_tokens<S, XT>(T0, B, s0.XQs, s0.XSs);
  int64_t *R = grow(s0.Rs, B * KL), *node = grow(s0.nodes, B), *perm = grow(s0.perms, B), *tmp = grow(s0.tmps, B);
  A* Z = grow(s0.Zs, B * KL);
  Router<S, A, kTile, XT> r0(T, x, B, R, Z, node, perm, tmp, s0);
  const int si = 1, ls = r0.bounds[si];  // split at the first stage boundary (level 3, or Ts < 3; L > ls as L >= 2)
  const int64_t parts = int64_t(1) << ls;
  int64_t* off = grow(s0.offs, parts + 1);
  const ForwardPlan plan(T, B / nth, sizeof(XT));
  for (int64_t k = 0; k < T.K; ++k) {
    for (int64_t i = 0; i < B; ++i) node[i] = 0, perm[i] = i;
    at::parallel_for(0, B, token_grain(ls * T.nIn), [&](int64_t b0, int64_t b1) {
      Router<S, A, kTile, XT> r(T, x, B, R, Z, node, perm, tmp, scratch<S, A>());
      r.k = k;
      r.walk_tiles(0, ls, perm + b0, b1 - b0, false);
    });
    r0.k = k;
    r0.sort_by_node(0, 0, ls, perm, B, off);
    at::parallel_for(0, nth, 1, [&](int64_t t0, int64_t t1) {
      Scratch<S, A>& s = scratch<S, A>();
      Router<S, A, kTile, XT> r(T, x, B, R, Z, node, perm, tmp, s);
      r.k = k, r.from_dram = plan.from_dram;
      const Finish<S, A, XT> finish{T, y, R, Z, s, plan};
      const int64_t lo = t0 * B / nth, hi = t1 * B / nth;  // this thread's share of the sorted tokens
      for (int64_t j = 0; j < parts; ++j) {  // the subtrees with tokens in it (one with more is shared with a neighbour)
        const int64_t a = std::max(lo, off[j]), n = std::min(hi, off[j + 1]) - a;
        if (n <= 0) continue;
        if (k + 1 < T.K) r.run(si, parts - 1 + j, perm + a, n, [](const int64_t*, int64_t) {});
        else r.run(si, parts - 1 + j, perm + a, n, finish);
      }
#ifdef FFF_X86
      if (plan.stream) _mm_sfence();  // order this thread's non-temporal stores before the op returns
#endif
    });
  }
  return true;
}

template <typename S, typename A, typename XT>
void forward(const TreeArgs<S>& T, const XT* x, XT* y, int64_t B) {
  const int nth = at::get_num_threads();
  if (nth > 1 && !at::in_parallel_region() && forward_split<S, A, XT>(T, x, y, B, nth)) return;
  const int64_t KL = T.K * T.L;
  at::parallel_for(0, B, token_grain(KL * (T.nIn + T.nOut)), [&](int64_t b0, int64_t b1) {
    Scratch<S, A>& s = scratch<S, A>();
    const int64_t M = b1 - b0;
    int64_t* R = grow(s.R, M * KL);
    A* Z = grow(s.Z, M * KL);
    const TreeArgs<S> Tq = int16_tokens<S, XT>(T, M, s.XQ, s.XS);
    const Finish<S, A, XT> finish{Tq, y + b0 * T.nOut, R, Z, s, ForwardPlan(Tq, M, sizeof(XT))};
    if (M < 2 * kTile) route<S, A, kTile / 2>(Tq, x + b0 * T.nIn, M, R, Z, s, finish);  // few tokens: 4 per tile is faster
    else route<S, A>(Tq, x + b0 * T.nIn, M, R, Z, s, finish, finish.plan.from_dram);
#ifdef FFF_X86
    if (finish.plan.stream) _mm_sfence();  // order the non-temporal stores before the op returns
#endif
  });
}

// Backward: dx per token; dX, dY, db (uninitialised on entry) get every row written exactly once: a visited row the
// sum over its tokens, in token order and by one thread (so the result is bitwise the same for any number of
// threads), an unvisited row zeros.
template <typename S, typename A>
void backward(const TreeArgs<S>& T, const S* g, const S* x, S* dx, S* dX, S* dY, S* db, int64_t B) {
  const int64_t KL = T.K * T.L, KN = T.K * T.N, n_items = B * KL;
  std::vector<int64_t> R(n_items);
  std::vector<A> GZ(n_items), C(n_items);
  // phase 1, per token: recompute the walk; per visited row: gc = <g, Y[row]>, GZ = gc * act'(z) (= dL/dz),
  // C = act(z); dx = sum GZ X[row]
  at::parallel_for(0, B, token_grain(2 * KL * (T.nIn + T.nOut)), [&](int64_t b0, int64_t b1) {
    Scratch<S, A>& s = scratch<S, A>();
    const int64_t M = b1 - b0;
    int64_t* Rb = R.data() + b0 * KL;
    A *Zb = GZ.data() + b0 * KL, *Cb = C.data() + b0 * KL;
    auto finish = [&](const int64_t* tk, int64_t n) {
      for_tiles<kTile>(n, [&](auto ntc, int64_t i) {
        constexpr int nt = decltype(ntc)::value;
        int64_t tok[nt];
        const S* gs[nt];
        const A* gz[nt];
        const int64_t* rows[nt];
        S* out[nt];
        for (int t = 0; t < nt; ++t) {
          tok[t] = tk[i + t];
          gs[t] = g + (b0 + tok[t]) * T.nOut, rows[t] = Rb + tok[t] * KL, gz[t] = Zb + tok[t] * KL;
          out[t] = dx + (b0 + tok[t]) * T.nIn;
        }
        for (int64_t j = 0; j < KL; ++j) {
          const S* rp[nt];
          A gc[nt];
          for (int t = 0; t < nt; ++t) rp[t] = T.Y + rows[t][j] * T.nOut;
          dots<A, nt>(gs, rp, T.nOut, gc);
          for (int t = 0; t < nt; ++t) {
            const int64_t e = tok[t] * KL + j;
            const A z = Zb[e];
            Zb[e] = gc[t] * fff::act_grad(T.act, z);
            Cb[e] = fff::act_fwd(T.act, z);
          }
        }
        combine_rows<S, A, nt>(T.X, T.nIn, out, rows, gz, KL, s);
      });
    };
    route<S, A>(T, x + b0 * T.nIn, M, Rb, Zb, s, finish);
  });
  // phase 2: counting sort of the (token, visited row) items by row, stable in token order
  std::vector<int64_t> off(KN + 1), order(n_items), pos(KN);
  counting_sort(n_items, KN, [&](int64_t e) { return R[e]; }, [](int64_t e) { return e; }, order.data(), off.data(), pos.data());
  // phase 3a: zero the unvisited rows (threads split the rows evenly)
  at::parallel_for(0, KN, std::max<int64_t>(1, (int64_t(1) << 16) / (T.nIn + T.nOut)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      if (off[r + 1] == off[r]) {
        std::fill(dX + r * T.nIn, dX + (r + 1) * T.nIn, S(0));
        std::fill(dY + r * T.nOut, dY + (r + 1) * T.nOut, S(0));
        if (db) db[r] = S(0);
      }
  });
  // phase 3b, per visited row (threads split the items evenly; a row belongs to the thread holding its first item):
  // dX[r] = sum GZ x, dY[r] = sum C g, db[r] = sum GZ over the row's tokens in token order
  at::parallel_for(0, n_items, std::max<int64_t>(16, token_grain(T.nIn + T.nOut)), [&](int64_t i0, int64_t i1) {
    Scratch<S, A>& s = scratch<S, A>();
    A* coef = grow(s.buf2, B);
    const S** rp = grow(s.P, B);
    const int64_t r0 = std::lower_bound(off.begin(), off.end() - 1, i0) - off.begin();
    const int64_t r1 = std::lower_bound(off.begin(), off.end() - 1, i1) - off.begin();
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = off[r + 1] - off[r], *it = order.data() + off[r];
      if (n == 0) continue;
      const S* const* rpp = rp;
      const A* cp = coef;
      S* o = dX + r * T.nIn;
      for (int64_t j = 0; j < n; ++j) rp[j] = x + (it[j] / KL) * T.nIn, coef[j] = GZ[it[j]];
      combine<A, 1>(&o, &rpp, &cp, n, T.nIn);
      if (db) {
        A acc = 0;
        for (int64_t j = 0; j < n; ++j) acc += coef[j];
        db[r] = static_cast<S>(acc);
      }
      o = dY + r * T.nOut;
      for (int64_t j = 0; j < n; ++j) rp[j] = g + (it[j] / KL) * T.nOut, coef[j] = C[it[j]];
      combine<A, 1>(&o, &rpp, &cp, n, T.nOut);
    }
  });
}

// Hard inference of a leaf FFF (fastfeedforward's `eval_forward`, fused): per token, d router dot products
// (n = 2n + 1 + (<x, W[n]> + c[n] >= 0): ties go right, NaN left, as the package), then the reached leaf j's hidden
// units h_k = act(<x, w1[j, k]> + b1[j, k]) and y = sum_k h_k w2[j, k] (+ b2[j]). Tokens are walked in tiles of
// kTile (interleaved dot products), then counting-sorted by leaf, so that a tile's tokens mostly share one leaf and
// its 2 l rows are read from memory once per tile instead of once per token. S == A only (float, double).
template <typename A> FFF_INLINE A leaf_act(int64_t act, A v) {
  return act == 2 ? (v > A(0) || v != v ? v : A(0)) : fff::act_fwd(act, v);  // ReLU keeps NaN, as torch.relu
}

template <typename A, int NT>
FFF_INLINE void leaf_descend(const LeafArgs<A>& T, const A* const* xs, int64_t* leaf) {
  int64_t node[NT];
  const A* rp[NT];
  A s[NT];
  for (int t = 0; t < NT; ++t) node[t] = 0;
  for (int64_t lev = 0; lev < T.d; ++lev) {
    for (int t = 0; t < NT; ++t) rp[t] = T.W + node[t] * T.I;
    dots<A, NT>(xs, rp, T.I, s);
    for (int t = 0; t < NT; ++t) node[t] = 2 * node[t] + 1 + (s[t] + T.c[node[t]] >= A(0));
  }
  for (int t = 0; t < NT; ++t) leaf[t] = node[t] - ((int64_t(1) << T.d) - 1);
}

template <typename A, int NT>
FFF_INLINE void leaf_mlp(const LeafArgs<A>& T, const A* const* xs, A* const* out, const int64_t* leaf, A* h, const A** rows) {
  const A* rp[NT];
  A s[NT];
  for (int64_t k = 0; k < T.l; ++k) {
    for (int t = 0; t < NT; ++t) rp[t] = T.w1 + (leaf[t] * T.l + k) * T.I;
    dots<A, NT>(xs, rp, T.I, s);
    for (int t = 0; t < NT; ++t) h[t * T.l + k] = leaf_act<A>(T.act, s[t] + T.b1[leaf[t] * T.l + k]);
  }
  const A* const* rpp[NT];
  const A* cs[NT];
  for (int t = 0; t < NT; ++t) {
    for (int64_t k = 0; k < T.l; ++k) rows[t * T.l + k] = T.w2 + (leaf[t] * T.l + k) * T.O;
    rpp[t] = rows + t * T.l, cs[t] = h + t * T.l;
  }
  combine<A, NT>(out, rpp, cs, T.l, T.O);
  if (T.b2)
    for (int t = 0; t < NT; ++t) {
      const A* bb = T.b2 + leaf[t] * T.O;
      for (int64_t j = 0; j < T.O; ++j) out[t][j] += bb[j];
    }
}

template <typename S, typename A>  // (S == A: the ISA dispatch's signature)
void leaf_forward(const LeafArgs<A>& T, const A* x, A* y, int64_t B) {
  const int64_t L = int64_t(1) << T.d;
  at::parallel_for(0, B, token_grain(T.d * T.I + T.l * (T.I + T.O)), [&](int64_t b0, int64_t b1) {
    const int64_t M = b1 - b0;
    std::vector<int64_t> leaf(M), perm(M), cnt(L + 1), pos(L);
    std::vector<A> h(kTile * T.l);  // a tile's hidden units, and its leaves' rows of w2
    std::vector<const A*> rows(kTile * T.l);
    for_tiles<kTile>(M, [&](auto ntc, int64_t i) {
      constexpr int nt = decltype(ntc)::value;
      const A* xs[nt];
      for (int t = 0; t < nt; ++t) xs[t] = x + (b0 + i + t) * T.I;
      leaf_descend<A, nt>(T, xs, leaf.data() + i);
    });
    counting_sort(M, L, [&](int64_t i) { return leaf[i]; }, [](int64_t i) { return i; }, perm.data(), cnt.data(), pos.data());
    for_tiles<kTile>(M, [&](auto ntc, int64_t i) {
      constexpr int nt = decltype(ntc)::value;
      const A* xs[nt];
      A* out[nt];
      int64_t lf[nt];
      for (int t = 0; t < nt; ++t) {
        const int64_t tok = perm[i + t];
        xs[t] = x + (b0 + tok) * T.I, out[t] = y + (b0 + tok) * T.O, lf[t] = leaf[tok];
      }
      leaf_mlp<A, nt>(T, xs, out, lf, h.data(), rows.data());
    });
  });
}
