// fff_cpu_impl.h: forward and backward drivers of the CPU tree op (token tiles, threads, deterministic reductions).
// Included by fff_cpu.cpp once per instruction set, after simd.h, inside that instruction set's namespace.
// S is the storage type of X, Y, b (float, double, Half, BFloat16); A the accumulation type (float or double). Token
// rows (x, y, grad_y, dx) and the gradient buffers are already in A here; tree rows are converted on the fly.
// No include guard on purpose.

template <typename S, typename A> FFF_INLINE const A* as_acc(const S* p, A* buf, int64_t n) {
  if constexpr (std::is_same_v<S, A>) return p;
  else {
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<A>(p[i]);
    return buf;
  }
}

// Per-thread scratch, grown on demand and kept between calls (no allocation on the hot path).
template <typename A> struct Scratch {
  std::vector<A> z, c, rowbuf;
  std::vector<int64_t> rows;
  std::vector<const A*> ptr;
  A* get(std::vector<A>& v, int64_t n) { if ((int64_t)v.size() < n) v.resize(n); return v.data(); }
};
template <typename A> Scratch<A>& scratch() { static thread_local Scratch<A> s; return s; }

// Walk NT tokens (rows xs, in A) down every tree: visited rows and pre-activations z, token-major (NT x KL).
template <typename S, typename A, int NT>
FFF_INLINE void walk(const TreeArgs<S>& T, const A* const* xs, int64_t* rows, A* z, A* buf) {
  const int64_t KL = T.K * T.L;
  for (int64_t k = 0; k < T.K; ++k) {
    int64_t node[NT] = {};
    for (int l = 0; l < T.L; ++l) {
      const A* rp[NT];
      A lam[NT];
      for (int t = 0; t < NT; ++t) rp[t] = as_acc<S, A>(T.X + (k * T.N + node[t]) * T.nIn, buf + t * T.nIn, T.nIn);
      dots<A, NT>(xs, rp, T.nIn, lam);
      for (int t = 0; t < NT; ++t) {
        const int64_t r = k * T.N + node[t];
        const A zz = lam[t] + (T.b ? static_cast<A>(T.b[r]) : A(0));
        rows[t * KL + k * T.L + l] = r;
        z[t * KL + k * T.L + l] = zz;
        node[t] = fff::child(node[t], zz);
      }
    }
  }
}

// y[t0 .. t0+NT) = sum over each token's visited rows of act(z) * Y[row].
template <typename S, typename A, int NT>
FFF_INLINE void forward_tile(const TreeArgs<S>& T, const A* x, A* y, int64_t t0, Scratch<A>& s) {
  const int64_t KL = T.K * T.L;
  int64_t* rows = s.rows.data();
  A *z = s.z.data(), *c = s.c.data(), *buf = s.rowbuf.data();
  const A** yr = s.ptr.data();
  const A* xs[NT];
  for (int t = 0; t < NT; ++t) xs[t] = x + (t0 + t) * T.nIn;
  walk<S, A, NT>(T, xs, rows, z, buf);
  for (int t = 0; t < NT; ++t) {
    for (int64_t i = 0; i < KL; ++i) {
      c[i] = fff::act_fwd(T.act, z[t * KL + i]);
      yr[i] = as_acc<S, A>(T.Y + rows[t * KL + i] * T.nOut, buf + i * T.nOut, T.nOut);
    }
    combine<A>(y + (t0 + t) * T.nOut, yr, c, KL, T.nOut);
  }
}

template <typename S, typename A> void prepare(Scratch<A>& s, const TreeArgs<S>& T, int NT) {
  const int64_t KL = T.K * T.L, w = std::max(T.nIn, T.nOut);
  s.get(s.z, NT * KL); s.get(s.c, NT * KL);
  if ((int64_t)s.rows.size() < NT * KL) s.rows.resize(NT * KL);
  if ((int64_t)s.ptr.size() < KL) s.ptr.resize(KL);
  s.get(s.rowbuf, std::is_same_v<S, A> ? 1 : std::max<int64_t>(NT, KL) * w);
}

// Tokens per parallel chunk: enough work (~2^18 multiply-adds) to pay for waking a thread.
inline int64_t token_grain(int64_t work_per_token) { return std::max<int64_t>(4, (int64_t(1) << 18) / std::max<int64_t>(1, work_per_token)); }

template <typename S, typename A>
void forward(const TreeArgs<S>& T, const A* x, A* y, int64_t B) {
  constexpr int NT = 4;
  at::parallel_for(0, B, token_grain(T.K * T.L * (T.nIn + T.nOut)), [&](int64_t b0, int64_t b1) {
    Scratch<A>& s = scratch<A>();
    prepare(s, T, NT);
    int64_t t = b0;
    for (; t + NT <= b1; t += NT) forward_tile<S, A, NT>(T, x, y, t, s);
    switch (b1 - t) {
      case 3: forward_tile<S, A, 3>(T, x, y, t, s); break;
      case 2: forward_tile<S, A, 2>(T, x, y, t, s); break;
      case 1: forward_tile<S, A, 1>(T, x, y, t, s); break;
    }
  });
}

// Backward, phase 1 for NT tokens: recompute the walk; per visited row i: gc = <g, Y[row]>, gz = gc * act'(z)
// (= dL/dz), c = act(z); dx = sum_i gz_i X[row_i]. Rows, gz and c are kept (B x KL) for phase 3.
template <typename S, typename A, int NT>
FFF_INLINE void backward_tile(const TreeArgs<S>& T, const A* g, const A* x, A* dx, int64_t t0, int64_t* R, A* GZ, A* C,
                              Scratch<A>& s) {
  const int64_t KL = T.K * T.L;
  int64_t* rows = R + t0 * KL;
  A *z = s.z.data(), *buf = s.rowbuf.data(), *gz = GZ + t0 * KL, *c = C + t0 * KL;
  const A** xr = s.ptr.data();
  const A *xs[NT], *gs[NT];
  for (int t = 0; t < NT; ++t) xs[t] = x + (t0 + t) * T.nIn, gs[t] = g + (t0 + t) * T.nOut;
  walk<S, A, NT>(T, xs, rows, z, buf);
  for (int64_t i = 0; i < KL; ++i) {
    const A* rp[NT];
    A gc[NT];
    for (int t = 0; t < NT; ++t) rp[t] = as_acc<S, A>(T.Y + rows[t * KL + i] * T.nOut, buf + t * T.nOut, T.nOut);
    dots<A, NT>(gs, rp, T.nOut, gc);
    for (int t = 0; t < NT; ++t) {
      const A zz = z[t * KL + i];
      gz[t * KL + i] = gc[t] * fff::act_grad(T.act, zz);
      c[t * KL + i] = fff::act_fwd(T.act, zz);
    }
  }
  for (int t = 0; t < NT; ++t) {
    for (int64_t i = 0; i < KL; ++i) xr[i] = as_acc<S, A>(T.X + rows[t * KL + i] * T.nIn, buf + i * T.nIn, T.nIn);
    combine<A>(dx + (t0 + t) * T.nIn, xr, gz + t * KL, KL, T.nIn);
  }
}

// Backward: dx per token; dX, dY, db only into visited rows (dX, dY, db arrive zeroed), each row summed by one thread
// over its tokens in token order, so the result is bitwise the same for any number of threads.
template <typename S, typename A>
void backward(const TreeArgs<S>& T, const A* g, const A* x, A* dx, A* dX, A* dY, A* db, int64_t B) {
  constexpr int NT = 4;
  const int64_t KL = T.K * T.L, KN = T.K * T.N, n_items = B * KL;
  std::vector<int64_t> R(n_items);
  std::vector<A> GZ(n_items), C(n_items);
  at::parallel_for(0, B, token_grain(KL * 2 * (T.nIn + T.nOut)), [&](int64_t b0, int64_t b1) {
    Scratch<A>& s = scratch<A>();
    prepare(s, T, NT);
    int64_t t = b0;
    for (; t + NT <= b1; t += NT) backward_tile<S, A, NT>(T, g, x, dx, t, R.data(), GZ.data(), C.data(), s);
    for (; t < b1; ++t) backward_tile<S, A, 1>(T, g, x, dx, t, R.data(), GZ.data(), C.data(), s);
  });
  // phase 2: counting sort of the (token, visited row) items by row, stable in token order
  std::vector<int64_t> off(KN + 1, 0), order(n_items);
  for (int64_t e = 0; e < n_items; ++e) ++off[R[e] + 1];
  for (int64_t r = 0; r < KN; ++r) off[r + 1] += off[r];
  {
    std::vector<int64_t> pos(off.begin(), off.end() - 1);
    for (int64_t e = 0; e < n_items; ++e) order[pos[R[e]]++] = e;
  }
  // phase 3: rows, split across threads by item count (rows whose first item falls in a thread's item range)
  at::parallel_for(0, n_items, std::max<int64_t>(16, token_grain(T.nIn + T.nOut)), [&](int64_t i0, int64_t i1) {
    Scratch<A>& s = scratch<A>();
    if ((int64_t)s.ptr.size() < B) s.ptr.resize(B);
    A* coef = s.get(s.c, B);
    const A** rp = s.ptr.data();
    const int64_t r0 = std::lower_bound(off.begin(), off.end() - 1, i0) - off.begin();
    const int64_t r1 = std::lower_bound(off.begin(), off.end() - 1, i1) - off.begin();
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = off[r + 1] - off[r];
      if (n == 0) continue;
      const int64_t* it = order.data() + off[r];
      for (int64_t j = 0; j < n; ++j) rp[j] = x + (it[j] / KL) * T.nIn, coef[j] = GZ[it[j]];
      combine<A>(dX + r * T.nIn, rp, coef, n, T.nIn);
      if (db) { A s_ = 0; for (int64_t j = 0; j < n; ++j) s_ += coef[j]; db[r] = s_; }
      for (int64_t j = 0; j < n; ++j) rp[j] = g + (it[j] / KL) * T.nOut, coef[j] = C[it[j]];
      combine<A>(dY + r * T.nOut, rp, coef, n, T.nOut);
    }
  });
}
