// fff_cuda.cu: the CUDA kernels of the FFF tree ops, forward and backward, for the CUDA dispatch key.
//
//   fff_nb::tree_forward(x, X, Y, b?, n_trees, act) -> y
//   fff_nb::tree_backward(grad_y, x, X, Y, b?, n_trees, act) -> (dx, dX, dY, db)
//
// The schemas are declared in fff_cpu.cpp (TORCH_LIBRARY(fff_nb, m)); this file only adds TORCH_LIBRARY_IMPL(fff_nb,
// CUDA, m) and is loaded after the CPU library. Semantics are those of fff_nb.core.tree_torch (see tree.h): per token
// and tree, L levels of  z = <x, X[n]> + b[n];  y += act(z) Y[n];  n = 2n + 1 + (z > 0);  fp32 accumulation for
// fp16/bf16, z == 0 and NaN go left, NaN propagates.
//
// Forward = two kernels:
//   walk     one group of WARPS warps per (token, tree) computes each level's dot product cooperatively (16-byte
//            coalesced loads, a butterfly shuffle then a fixed-order sum over the group's warps, so every thread of
//            the group gets the same bits and takes the same branch) and writes the visited rows and act(z);
//   combine  one block per (token, column tile of up to 256 threads): y[t, j] = sum over trees and levels act(z) Y[row, j], levels in order.
// Backward = walk again (also gc = <grad_y, Y[row]> per level, gz = gc act'(z)), combine over X for dx, then dX, dY,
//   db as segment sums over the (token, level) entries sorted by row (a stable sort): fixed chunks of kChunk sorted
//   entries sum their runs in order; a run that crosses a chunk end leaves per-chunk partials that one block adds in
//   chunk order. Deterministic (no float atomics); the cost is the sort plus one zero-fill of dX and dY.
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include "tree.h"
#include "tree_check.h"

#ifdef FFF_CUDA_EMULATE  // `tools/check_cuda.py --emulate` runs these kernels on CPU threads with its cuda_emu.h
#include "cuda_emu.h"
#else
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define FFF_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<grid, block, 0, stream>>>
#endif

namespace fff_nb {

#ifdef FFF_CUDA_EMULATE
constexpr bool kEmulated = true;   // CPU tensors stand in for CUDA ones
#else
constexpr bool kEmulated = false;
#endif
constexpr int kThreads = 256;  // threads per block of the walk; the most of the column kernels

// Threads per block of a column kernel over `width` elements, V per thread: a multiple of 32, at most kThreads
// (narrow rows get small blocks instead of mostly idle threads).
static int col_threads(int64_t width, int V) {
  const int64_t need = (width + V - 1) / V;
  return int(std::min<int64_t>(kThreads, std::max<int64_t>(32, (need + 31) / 32 * 32)));
}

// Column tiles of `threads` threads x V elements covering `width`.
static unsigned col_tiles(int64_t width, int threads, int V) {
  return unsigned((width + int64_t(threads) * V - 1) / (int64_t(threads) * V));
}
constexpr int kChunk = 32;     // sorted (token, level) entries per block of the segment sums

template <typename S> constexpr int kVec = 16 / sizeof(S);  // elements per 16-byte load

// The tree parameters as raw pointers (storage type S) and sizes.
template <typename S> struct Tree {
  const S *X, *Y, *b;     // (K*N, nIn), (K*N, nOut), (K*N) or nullptr
  int64_t nIn, nOut, N;   // row widths, nodes per tree
  int K, L, act;          // trees, levels, coefficient (fff::Act)
};

// ---- device helpers ----
template <typename S, int V> struct alignas(sizeof(S) * V) Pack { S v[V]; };

// V consecutive elements at p (16-byte aligned when V > 1) converted to A.
template <int V, typename S, typename A> __device__ __forceinline__ void load(const S* __restrict__ p, A (&out)[V]) {
  const Pack<S, V> pk = *reinterpret_cast<const Pack<S, V>*>(p);
#pragma unroll
  for (int v = 0; v < V; ++v) out[v] = static_cast<A>(pk.v[v]);
}

template <int V, typename S, typename A> __device__ __forceinline__ void store(S* __restrict__ p, const A (&in)[V]) {
  Pack<S, V> pk;
#pragma unroll
  for (int v = 0; v < V; ++v) pk.v[v] = static_cast<S>(in[v]);
  *reinterpret_cast<Pack<S, V>*>(p) = pk;
}

// This thread's share of <a, w> over n elements: thread i of `stride` takes elements [iV, iV+V), [(i+stride)V, ...), ...
template <int V, typename S, typename A>
__device__ __forceinline__ A dot_part(const S* __restrict__ a, const S* __restrict__ w, int64_t n, int i, int stride) {
  A s[V] = {};
#pragma unroll 4
  for (int64_t k = int64_t(i) * V; k < n; k += int64_t(stride) * V) {
    A av[V], wv[V];
    load<V>(a + k, av);
    load<V>(w + k, wv);
#pragma unroll
    for (int v = 0; v < V; ++v) s[v] += av[v] * wv[v];
  }
  A r = 0;
#pragma unroll
  for (int v = 0; v < V; ++v) r += s[v];
  return r;
}

// Sum over the warp; the butterfly leaves the same bits in every lane (each step adds the same two values).
template <typename A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---- walk: the visited rows and their coefficients; with GRAD also gz = <grad_y, Y[row]> act'(z) ----
// Block: kThreads threads = kThreads / (32 WARPS) groups; group g handles item blockIdx.x * groups + g = t * K + k.
// Outputs are indexed e = (t K + k) L + l.
template <typename S, typename A, int WARPS, int V, bool GRAD>
__global__ void __launch_bounds__(kThreads) walk_kernel(const S* __restrict__ x, const S* __restrict__ g, Tree<S> T,
                                                        int64_t B, int64_t* __restrict__ rows, A* __restrict__ coef,
                                                        A* __restrict__ gz) {
  constexpr int kGroup = 32 * WARPS, kGroups = kThreads / kGroup;
  __shared__ A red[2][kThreads / 32][2];  // per level parity and warp: partial z, partial gc
  const int tid = threadIdx.x, warp = tid / 32, gl = tid % kGroup, gw = warp % WARPS;
  const int64_t item = int64_t(blockIdx.x) * kGroups + tid / kGroup, t = item / T.K;
  const int k = int(item % T.K);
  const bool active = t < B;  // inactive groups still take part in the block's barriers
  const S* xt = x + (active ? t : 0) * T.nIn;
  const S* gt = GRAD ? g + (active ? t : 0) * T.nOut : nullptr;
  int64_t node = 0;
  for (int l = 0; l < T.L; ++l) {
    const int64_t r = k * T.N + node;
    A s = 0, c = 0;
    if (active) {
      s = dot_part<V, S, A>(xt, T.X + r * T.nIn, T.nIn, gl, kGroup);
      if (GRAD) c = dot_part<V, S, A>(gt, T.Y + r * T.nOut, T.nOut, gl, kGroup);
    }
    s = warp_sum(s);
    if (GRAD) c = warp_sum(c);
    if (WARPS > 1) {  // double-buffered by level parity: one barrier per level
      if (tid % 32 == 0) red[l & 1][warp][0] = s, red[l & 1][warp][1] = c;
      __syncthreads();
      s = 0, c = 0;
#pragma unroll
      for (int w = 0; w < WARPS; ++w) s += red[l & 1][warp - gw + w][0], c += red[l & 1][warp - gw + w][1];
    }
    const A z = s + (T.b ? static_cast<A>(T.b[r]) : A(0));
    if (active && gl == 0) {
      const int64_t e = (t * T.K + k) * T.L + l;
      rows[e] = r;
      coef[e] = fff::act_fwd<A>(T.act, z);
      if (GRAD) gz[e] = c * fff::act_grad<A>(T.act, z);
    }
    node = fff::child(node, z);
  }
}

template <typename S, bool GRAD>
void launch_walk(const S* x, const S* g, const Tree<S>& T, int64_t B, int64_t* rows, at::opmath_type<S>* coef,
                 at::opmath_type<S>* gz, bool vec, cudaStream_t stream) {
  using A = at::opmath_type<S>;
  const bool wide = T.nIn / kVec<S> > 32 * 8;  // more than 8 vector loads per lane for one warp: use 8 warps
  const int64_t items = B * T.K, groups = kThreads / (wide ? 256 : 32);
  const dim3 grid(unsigned((items + groups - 1) / groups));
#define FFF_WALK(W, V) FFF_LAUNCH(grid, kThreads, stream, walk_kernel<S, A, W, V, GRAD>)(x, g, T, B, rows, coef, gz)
  if (wide) { if (vec) FFF_WALK(8, kVec<S>); else FFF_WALK(8, 1); }
  else      { if (vec) FFF_WALK(1, kVec<S>); else FFF_WALK(1, 1); }
#undef FFF_WALK
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---- combine: out[t, j] = sum over the token's KL entries of w[e] W[rows[e], j] (levels in order, A accumulation) ----
// Grid (B, column tiles of blockDim.x V); no barriers, so idle threads return at once.
template <typename S, typename A, int V>
__global__ void __launch_bounds__(kThreads) combine_kernel(const S* __restrict__ W, const int64_t* __restrict__ rows,
                                                           const A* __restrict__ w, int64_t width, int KL,
                                                           S* __restrict__ out) {
  const int64_t t = blockIdx.x, j = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * V;
  if (j >= width) return;
  const int64_t* r = rows + t * KL;
  const A* c = w + t * KL;
  A acc[V] = {};
  for (int e = 0; e < KL; ++e) {
    const A ce = c[e];
    A v[V];
    load<V>(W + r[e] * width + j, v);
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] += ce * v[i];
  }
  store<V>(out + t * width + j, acc);
}

template <typename S>
void launch_combine(const S* W, const int64_t* rows, const at::opmath_type<S>* w, int64_t B, int64_t width, int KL,
                    S* out, bool vec, cudaStream_t stream) {
  using A = at::opmath_type<S>;
  const int V = vec ? kVec<S> : 1;
  const int threads = col_threads(width, V);
  const dim3 grid(unsigned(B), col_tiles(width, threads, V));
  if (vec) FFF_LAUNCH(grid, threads, stream, combine_kernel<S, A, kVec<S>>)(W, rows, w, width, KL, out);
  else     FFF_LAUNCH(grid, threads, stream, combine_kernel<S, A, 1>)(W, rows, w, width, KL, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---- segment sums: out[row, j] = sum over the entries e of row of w[e] vec[token(e), j] (vec == nullptr: width 1,
// value 1), entries sorted by row (`sorted`, stable) with `perm` the entry index of each sorted position. ----
// Block c sums the runs of positions [c kChunk, (c+1) kChunk) in order. A run wholly inside the chunk is written to
// `out`; a run continued from the previous chunk leaves its partial in part[c][0], one that goes on into the next
// chunk in part[c][1], and segment_fixup_kernel finishes it. Grid (chunks, column tiles).
template <typename S, typename A, int V>
__global__ void __launch_bounds__(kThreads) segment_sum_kernel(const int64_t* __restrict__ sorted,
                                                               const int64_t* __restrict__ perm, const A* __restrict__ w,
                                                               const S* __restrict__ vec, int64_t M, int KL,
                                                               int64_t width, S* __restrict__ out, A* __restrict__ part) {
  const int64_t c = blockIdx.x, p0 = c * kChunk, p1 = p0 + kChunk < M ? p0 + kChunk : M;
  const int64_t j = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * V;
  if (j >= width) return;
  int64_t row = sorted[p0];
  bool head = p0 > 0 && sorted[p0 - 1] == row;  // this run began in an earlier chunk
  A acc[V] = {};
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t e = perm[p];
    const A we = w[e];
    if (vec) {
      A v[V];
      load<V>(vec + (e / KL) * width + j, v);
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] += we * v[i];
    } else acc[0] += we;
    const int64_t next = p + 1 < M ? sorted[p + 1] : -1;
    if (next != row || p + 1 == p1) {  // the run ends, or the chunk does
      if (!head && next != row) store<V>(out + row * width + j, acc);
      else store<V>(part + (c * 2 + (head ? 0 : 1)) * width + j, acc);
      row = next, head = false;
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] = 0;
    }
  }
}

// Finishes the run that begins in chunk c and goes on past its end: part[c][1] + part[c+1][0] + ... in chunk order.
template <typename S, typename A>
__global__ void __launch_bounds__(kThreads) segment_fixup_kernel(const int64_t* __restrict__ sorted, int64_t M,
                                                                 int64_t width, const A* __restrict__ part,
                                                                 S* __restrict__ out) {
  const int64_t c = blockIdx.x, p0 = c * kChunk, p1 = p0 + kChunk;
  const int64_t j = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= width || p1 >= M) return;
  const int64_t row = sorted[p1 - 1];
  if (sorted[p1] != row || (p0 > 0 && sorted[p0 - 1] == row)) return;  // ends here, or began in an earlier chunk
  A acc = part[(c * 2 + 1) * width + j];
  for (int64_t cc = c + 1;; ++cc) {
    acc += part[cc * 2 * width + j];
    const int64_t q1 = (cc + 1) * kChunk;
    if (q1 >= M || sorted[q1] != row) break;
  }
  out[row * width + j] = static_cast<S>(acc);
}

template <typename S>
void launch_segment_sum(const int64_t* sorted, const int64_t* perm, const at::opmath_type<S>* w, const S* vec, int64_t M,
                        int KL, int64_t width, S* out, at::opmath_type<S>* part, bool vecok, cudaStream_t stream) {
  using A = at::opmath_type<S>;
  const int V = vecok ? kVec<S> : 1;
  const unsigned chunks = unsigned((M + kChunk - 1) / kChunk);
  const int threads = col_threads(width, V), threads1 = col_threads(width, 1);
  const dim3 grid(chunks, col_tiles(width, threads, V));
  if (vecok) FFF_LAUNCH(grid, threads, stream, segment_sum_kernel<S, A, kVec<S>>)(sorted, perm, w, vec, M, KL, width, out, part);
  else       FFF_LAUNCH(grid, threads, stream, segment_sum_kernel<S, A, 1>)(sorted, perm, w, vec, M, KL, width, out, part);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const dim3 grid1(chunks, col_tiles(width, threads1, 1));
  FFF_LAUNCH(grid1, threads1, stream, segment_fixup_kernel<S, A>)(sorted, M, width, part, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---- host side ----
static bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether rows of `width` elements of S starting at each pointer allow 16-byte vector loads.
template <typename S> static bool vec_ok(int64_t width, std::initializer_list<const void*> ptrs) {
  if (width % kVec<S>) return false;
  for (const void* p : ptrs)
    if (p && !aligned16(p)) return false;
  return true;
}

// Argument checks: the shared ones (tree_check.h) and this kernel's device.
static int check_tree(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, const std::optional<at::Tensor>& b,
                      int64_t n_trees, int64_t act) {
  const int L = check_tree_args(x, X, Y, b, n_trees, act);
  TORCH_CHECK_VALUE((kEmulated || x.is_cuda()) && X.device() == x.device() && Y.device() == x.device(),
                    "tree op: `x`, `X` and `Y` must be on the same CUDA device, got ", x.device(), ", ", X.device(), ", ", Y.device());
  if (b) TORCH_CHECK_VALUE(b->device() == x.device(), "`b` is on ", b->device(), " but `x` is on ", x.device());
  return L;
}

template <typename S>
static Tree<S> tree_of(const at::Tensor& X, const at::Tensor& Y, const at::Tensor& b, int64_t K, int L, int64_t act) {
  return Tree<S>{X.data_ptr<S>(), Y.data_ptr<S>(), b.defined() ? b.data_ptr<S>() : nullptr,
                 X.size(1), Y.size(1), X.size(0) / K, int(K), L, int(act)};
}

at::Tensor tree_forward_cuda(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, const std::optional<at::Tensor>& b,
                             int64_t n_trees, int64_t act) {
  const int L = check_tree(x, X, Y, b, n_trees, act);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), Xc = X.contiguous(), Yc = Y.contiguous(), bc = b ? b->contiguous() : at::Tensor();
  const int64_t B = x.size(0), M = B * n_trees * L;
  at::Tensor y = at::empty({B, Y.size(1)}, x.options());
  if (y.numel() == 0) return y;
  const auto acc = at::toOpMathType(x.scalar_type());
  at::Tensor rows = at::empty({M}, x.options().dtype(at::kLong)), coef = at::empty({M}, x.options().dtype(acc));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tree_forward_cuda", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const auto T = tree_of<S>(Xc, Yc, bc, n_trees, L, act);
    launch_walk<S, false>(xc.data_ptr<S>(), nullptr, T, B, rows.data_ptr<int64_t>(), coef.data_ptr<A>(), nullptr,
                          vec_ok<S>(T.nIn, {xc.data_ptr(), Xc.data_ptr()}), stream);
    launch_combine<S>(T.Y, rows.data_ptr<int64_t>(), coef.data_ptr<A>(), B, T.nOut, int(n_trees) * L, y.data_ptr<S>(),
                      vec_ok<S>(T.nOut, {Yc.data_ptr(), y.data_ptr()}), stream);
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> tree_backward_cuda(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y,
    const std::optional<at::Tensor>& b, int64_t n_trees, int64_t act) {
  const int L = check_tree(x, X, Y, b, n_trees, act);
  check_grad_y(grad_y, x, Y);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), gc = grad_y.contiguous(), Xc = X.contiguous(), Yc = Y.contiguous();
  const at::Tensor bc = b ? b->contiguous() : at::Tensor();
  const int64_t B = x.size(0), M = B * n_trees * L, nIn = X.size(1), nOut = Y.size(1);
  // rows no token visits keep these zeros; every visited row is written exactly once below
  at::Tensor dx = at::empty({B, nIn}, x.options()), dX = at::zeros(X.sizes(), x.options()), dY = at::zeros(Y.sizes(), x.options());
  at::Tensor db = b ? at::zeros({X.size(0)}, x.options()) : at::empty({0}, x.options());
  if (B == 0) return {dx, dX, dY, db};
  const auto acc = at::toOpMathType(x.scalar_type());
  const auto fopt = x.options().dtype(acc);
  at::Tensor rows = at::empty({M}, x.options().dtype(at::kLong)), coef = at::empty({M}, fopt), gz = at::empty({M}, fopt);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int KL = int(n_trees) * L;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tree_backward_cuda", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const auto T = tree_of<S>(Xc, Yc, bc, n_trees, L, act);
    const S *xp = xc.data_ptr<S>(), *gp = gc.data_ptr<S>();
    const bool vin = vec_ok<S>(nIn, {xp, T.X, dx.data_ptr(), dX.data_ptr()}), vout = vec_ok<S>(nOut, {gp, T.Y, dY.data_ptr()});
    launch_walk<S, true>(xp, gp, T, B, rows.data_ptr<int64_t>(), coef.data_ptr<A>(), gz.data_ptr<A>(), vin && vout, stream);
    if (nIn > 0) launch_combine<S>(T.X, rows.data_ptr<int64_t>(), gz.data_ptr<A>(), B, nIn, KL, dx.data_ptr<S>(), vin, stream);
    // (row, entry) pairs grouped by row, entries in order; the optional<bool> picks the `stable` overload (a plain
    // `true` would be taken as dim=1)
    const auto sorted = at::sort(rows, std::optional<bool>(true), /*dim=*/0, /*descending=*/false);
    const int64_t *sp = std::get<0>(sorted).data_ptr<int64_t>(), *pp = std::get<1>(sorted).data_ptr<int64_t>();
    const int64_t chunks = (M + kChunk - 1) / kChunk, width = std::max<int64_t>({nIn, nOut, 1});
    at::Tensor part = at::empty({chunks * 2 * width}, fopt);  // reused: the kernels of one stream run in order
    A* pt = part.data_ptr<A>();
    if (nIn > 0) launch_segment_sum<S>(sp, pp, gz.data_ptr<A>(), xp, M, KL, nIn, dX.data_ptr<S>(), pt, vin, stream);
    if (nOut > 0) launch_segment_sum<S>(sp, pp, coef.data_ptr<A>(), gp, M, KL, nOut, dY.data_ptr<S>(), pt, vout, stream);
    if (b) launch_segment_sum<S>(sp, pp, gz.data_ptr<A>(), nullptr, M, KL, 1, db.data_ptr<S>(), pt, false, stream);
  });
  return {dx, dX, dY, db};
}

}  // namespace fff_nb

#ifndef FFF_CUDA_EMULATE
TORCH_LIBRARY_IMPL(fff_nb, CUDA, m) {
  m.impl("tree_forward", &fff_nb::tree_forward_cuda);
  m.impl("tree_backward", &fff_nb::tree_backward_cuda);
}
#endif
