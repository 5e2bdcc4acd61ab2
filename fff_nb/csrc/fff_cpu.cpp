// fff_cpu.cpp: the fused CPU kernels of the FFF tree op, forward and backward, registered with torch.library.
//
//   fff_nb::tree_forward(x, X, Y, b?, n_trees, act) -> y                  y = sum over trees and levels act(z) Y[node]
//   fff_nb::tree_backward(grad_y, x, X, Y, b?, n_trees, act) -> (dx, dX, dY, db)   (the backward recomputes the walk)
//   fff_nb::tree_forward_q(x, X, Y, sX?, sY?, b?, n_trees, act) -> y     the forward of a compressed tree: rows int8 with
//                                                                        float scales, or bf16; x, y, b float32
//
// Semantics are those of fff_nb.core.tree_torch (see tree.h). The inner loops (simd.h) and drivers (fff_cpu_impl.h)
// are compiled three times, for AVX-512, AVX2+FMA and the baseline instruction set, each in its own file
// (fff_cpu_avx512.cpp, fff_cpu_avx2.cpp, fff_cpu_baseline.cpp: ninja builds them in parallel); the best one the CPU
// supports is picked at load time (and can be forced with the `_set_isa` op for tests).
// Only light headers (no torch/extension.h): the first build must stay short. The one pybind11 function is the
// eager inference entry point: it calls the CPU kernel without the dispatcher's boxing (~0.5 us at batch 1).
#include "fff_cpu.h"
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/EmptyTensor.h>
#include <ATen/OpMathType.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/csrc/autograd/python_variable.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include "tree_check.h"

namespace fff_nb {

// ---- instruction-set selection ----
enum Isa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };
static const char* kIsaNames[] = {"baseline", "avx2", "avx512"};

static int best_isa() {
#ifdef FFF_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kAvx2;
#endif
  return kBaseline;
}
static int g_isa = best_isa();

// The instruction sets this CPU can run, best first.
std::vector<std::string> isas() {
  std::vector<std::string> r;
  for (int i = best_isa(); i >= 0; --i) r.push_back(kIsaNames[i]);
  return r;
}
// Force the instruction set by name (for tests and benchmarks; "" keeps it); returns the one in use before.
std::string set_isa(c10::string_view name) {
  std::string prev = kIsaNames[g_isa];
  if (name.empty()) return prev;
  for (int i = 0; i <= best_isa(); ++i)
    if (name == kIsaNames[i]) { g_isa = i; return prev; }
  TORCH_CHECK_VALUE(false, "instruction set '", std::string(name), "' is not available on this CPU");
  return prev;
}

// ---- argument checks: the shared ones (tree_check.h) and this kernel's device ----
static int check_tree(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, const std::optional<at::Tensor>& b,
                      int64_t n_trees, int64_t act) {
  const int L = check_tree_args(x, X, Y, b, n_trees, act);
  TORCH_CHECK_VALUE(x.device().is_cpu() && X.device().is_cpu() && Y.device().is_cpu(), "tree op: CPU kernel got non-CPU tensors");
  if (b) TORCH_CHECK_VALUE(b->device().is_cpu(), "tree op: CPU kernel got a non-CPU `b`");
  return L;
}

// `t` as a contiguous tensor, without a dispatcher call when it already is one.
static at::Tensor contig(const at::Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

template <typename S>
static TreeArgs<S> tree_args(const at::Tensor& X, const at::Tensor& Y, const at::Tensor& b, int64_t K, int L, int64_t act) {
  return TreeArgs<S>{X.data_ptr<S>(), Y.data_ptr<S>(), b.defined() ? b.data_ptr<S>() : nullptr,
                     X.size(1), Y.size(1), X.size(0) / K, K, L, act};
}

// Calls fn<S, A> of the selected instruction set (every storage type: fp16/bf16 rows are converted in registers).
#ifdef FFF_X86
#define FFF_ISA_CALL(fn, ...)                           \
  switch (g_isa) {                                      \
    case kAvx512: avx512::fn<S, A>(__VA_ARGS__); break; \
    case kAvx2: avx2::fn<S, A>(__VA_ARGS__); break;     \
    default: baseline::fn<S, A>(__VA_ARGS__);           \
  }
#else
#define FFF_ISA_CALL(fn, ...) baseline::fn<S, A>(__VA_ARGS__);
#endif

at::Tensor tree_forward_cpu(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, const std::optional<at::Tensor>& b,
                            int64_t n_trees, int64_t act) {
  const int L = check_tree(x, X, Y, b, n_trees, act);
  // borrowed, not copied, when already contiguous (each copy of a tensor handle is two atomic refcount updates)
  const auto xc = x.expect_contiguous(), Xc = X.expect_contiguous(), Yc = Y.expect_contiguous();
  const auto bc = b ? b->expect_contiguous() : c10::MaybeOwned<at::Tensor>::owned(std::in_place);
  at::Tensor y = at::detail::empty_cpu({x.size(0), Y.size(1)}, x.scalar_type(), std::nullopt, std::nullopt, std::nullopt, std::nullopt);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tree_forward_cpu", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const auto T = tree_args<S>(*Xc, *Yc, *bc, n_trees, L, act);
    FFF_ISA_CALL(forward, T, xc->data_ptr<S>(), y.data_ptr<S>(), x.size(0));
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> tree_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y,
    const std::optional<at::Tensor>& b, int64_t n_trees, int64_t act) {
  const int L = check_tree(x, X, Y, b, n_trees, act);
  check_grad_y(grad_y, x, Y);
  const auto dt = x.scalar_type();
  const at::Tensor Xc = contig(X), Yc = contig(Y), bc = b ? contig(*b) : at::Tensor(), xc = contig(x), gc = contig(grad_y);
  const auto empty = [&](at::IntArrayRef size) { return at::detail::empty_cpu(size, dt, {}, {}, {}, {}); };
  at::Tensor dx = empty({x.size(0), X.size(1)}), dX = empty(X.sizes()), dY = empty(Y.sizes());
  at::Tensor db = b ? empty({X.size(0)}) : x.new_empty({0});  // every row is written by the kernel
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dt, "tree_backward_cpu", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const auto T = tree_args<S>(Xc, Yc, bc, n_trees, L, act);
    FFF_ISA_CALL(backward, T, gc.data_ptr<S>(), xc.data_ptr<S>(), dx.data_ptr<S>(), dX.data_ptr<S>(), dY.data_ptr<S>(),
                 b ? db.data_ptr<S>() : nullptr, x.size(0));
  });
  return {dx, dX, dY, db};
}

// ---- compressed trees (inference only) ----

// A compressed tree's arguments: x (B, nIn) float32; X, Y int8 with float32 scales sX, sY (one per row: shape (rows,),
// or one per block of kQB values: (rows, ceil(width / kQB))), or X, Y bfloat16 without scales; b float32 (rows,) or
// None. Returns the levels per tree.
static int check_tree_q(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, const std::optional<at::Tensor>& sX,
                        const std::optional<at::Tensor>& sY, const std::optional<at::Tensor>& b, int64_t n_trees, int64_t act) {
  const int L = fff_nb::check_tree_shapes(x, X, Y, n_trees, act);
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "`x` must be float32, got ", x.scalar_type());
  const auto dt = X.scalar_type();
  TORCH_CHECK_TYPE((dt == at::kChar || dt == at::kBFloat16) && Y.scalar_type() == dt,
                   "`X` and `Y` must both be int8 or both bfloat16, got ", dt, " and ", Y.scalar_type());
  if (dt == at::kChar) {
    TORCH_CHECK_VALUE(sX && sY, "int8 `X` and `Y` need their scales `sX` and `sY`");
    TORCH_CHECK_TYPE(sX->scalar_type() == at::kFloat && sY->scalar_type() == at::kFloat, "`sX` and `sY` must be float32, got ",
                     sX->scalar_type(), " and ", sY->scalar_type());
    const bool block = sX->dim() == 2;
    const int64_t n = X.size(0);
    TORCH_CHECK_VALUE(block ? (sX->size(0) == n && sX->size(1) == (X.size(1) + kQB - 1) / kQB) : (sX->dim() == 1 && sX->size(0) == n),
                      "`sX` must have shape (", n, ",) or (", n, ", ", (X.size(1) + kQB - 1) / kQB, "), got ", sX->sizes());
    TORCH_CHECK_VALUE(block ? (sY->dim() == 2 && sY->size(0) == n && sY->size(1) == (Y.size(1) + kQB - 1) / kQB)
                            : (sY->dim() == 1 && sY->size(0) == n),
                      "`sY` must have shape (", n, block ? ", " : ",", block ? std::to_string((Y.size(1) + kQB - 1) / kQB) : "",
                      ") like `sX`, got ", sY->sizes());
    TORCH_CHECK_VALUE(sX->device().is_cpu() && sY->device().is_cpu(), "tree_forward_q: CPU kernel got non-CPU scales");
  } else {
    TORCH_CHECK_VALUE(!sX && !sY, "bfloat16 `X` and `Y` take no scales: pass None for `sX` and `sY`");
  }
  if (b) {
    TORCH_CHECK_VALUE(b->dim() == 1 && b->size(0) == X.size(0), "`b` must have shape (", X.size(0), ",), got ", b->sizes());
    TORCH_CHECK_TYPE(b->scalar_type() == at::kFloat, "`b` must be float32, got ", b->scalar_type());
    TORCH_CHECK_VALUE(b->device().is_cpu(), "tree_forward_q: CPU kernel got a non-CPU `b`");
  }
  TORCH_CHECK_VALUE(x.device().is_cpu() && X.device().is_cpu() && Y.device().is_cpu(), "tree_forward_q: CPU kernel got non-CPU tensors");
  return L;
}

at::Tensor tree_forward_q_cpu(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, const std::optional<at::Tensor>& sX,
                              const std::optional<at::Tensor>& sY, const std::optional<at::Tensor>& b, int64_t n_trees, int64_t act) {
  const int L = check_tree_q(x, X, Y, sX, sY, b, n_trees, act);
  const auto owned = c10::MaybeOwned<at::Tensor>::owned(std::in_place);
  const auto xc = x.expect_contiguous(), Xc = X.expect_contiguous(), Yc = Y.expect_contiguous();
  const auto sXc = sX ? sX->expect_contiguous() : owned, sYc = sY ? sY->expect_contiguous() : owned;
  const auto bc = b ? b->expect_contiguous() : c10::MaybeOwned<at::Tensor>::owned(std::in_place);
  at::Tensor y = at::detail::empty_cpu({x.size(0), Y.size(1)}, at::kFloat, std::nullopt, std::nullopt, std::nullopt, std::nullopt);
  const float *px = xc->data_ptr<float>(), *pb = b ? bc->data_ptr<float>() : nullptr;
  float* py = y.data_ptr<float>();
  const int64_t B = x.size(0);
  using A = float;
  if (X.scalar_type() == at::kChar) {
    using S = int8_t;
    TreeArgs<S> T{Xc->data_ptr<S>(), Yc->data_ptr<S>(), nullptr, X.size(1), Y.size(1), X.size(0) / n_trees, n_trees, L, act};
    T.sX = sXc->data_ptr<float>(), T.sY = sYc->data_ptr<float>(), T.bf = pb, T.qb = sX->dim() == 2 ? kQB : 0;
    FFF_ISA_CALL(forward, T, px, py, B);
  } else {
    using S = c10::BFloat16;
    TreeArgs<S> T{Xc->data_ptr<S>(), Yc->data_ptr<S>(), nullptr, X.size(1), Y.size(1), X.size(0) / n_trees, n_trees, L, act};
    T.bf = pb;
    FFF_ISA_CALL(forward, T, px, py, B);
  }
  return y;
}

at::Tensor leaf_forward_cpu(const at::Tensor& x, const at::Tensor& W, const at::Tensor& c, const at::Tensor& w1,
                            const at::Tensor& b1, const at::Tensor& w2, const std::optional<at::Tensor>& b2, int64_t act) {
  TORCH_CHECK_VALUE(x.dim() == 2, "`x` must be 2-D (B, I), got shape ", x.sizes());
  TORCH_CHECK_VALUE(w1.dim() == 3 && w2.dim() == 3, "`w1` and `w2` must be 3-D (leaves, l, I) and (leaves, l, O), got ",
                    w1.sizes(), " and ", w2.sizes());
  const int64_t L = w1.size(0), l = w1.size(1), I = x.size(1), O = w2.size(2);
  TORCH_CHECK_VALUE(L > 0 && (L & (L - 1)) == 0, "the number of leaves must be a power of 2, got ", L);
  int64_t d = 0;
  while ((int64_t(1) << d) < L) ++d;
  TORCH_CHECK_VALUE(W.dim() == 2 && W.size(0) == L - 1 && W.size(1) == I, "`W` must have shape (", L - 1, ", ", I, "), got ", W.sizes());
  TORCH_CHECK_VALUE(c.dim() == 1 && c.size(0) == L - 1, "`c` must have shape (", L - 1, ",), got ", c.sizes());
  TORCH_CHECK_VALUE(w1.size(2) == I, "`w1` must have shape (", L, ", ", l, ", ", I, "), got ", w1.sizes());
  TORCH_CHECK_VALUE(b1.dim() == 2 && b1.size(0) == L && b1.size(1) == l, "`b1` must have shape (", L, ", ", l, "), got ", b1.sizes());
  TORCH_CHECK_VALUE(w2.size(0) == L && w2.size(1) == l, "`w2` must have shape (", L, ", ", l, ", O), got ", w2.sizes());
  if (b2) TORCH_CHECK_VALUE(b2->dim() == 2 && b2->size(0) == L && b2->size(1) == O, "`b2` must have shape (", L, ", ", O, "), got ", b2->sizes());
  TORCH_CHECK_VALUE(act >= 0 && act <= 2, "`act` must be 0 (identity), 1 (gelu) or 2 (relu), got ", act);
  const auto dt = x.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kDouble, "leaf_forward: float32 or float64 tensors, got ", dt);
  for (const at::Tensor* t : {&W, &c, &w1, &b1, &w2})
    TORCH_CHECK_TYPE(t->scalar_type() == dt && t->device().is_cpu(), "leaf_forward: every tensor must be a CPU ", dt, " tensor");
  if (b2) TORCH_CHECK_TYPE(b2->scalar_type() == dt && b2->device().is_cpu(), "leaf_forward: `b2` must be a CPU ", dt, " tensor");
  TORCH_CHECK_VALUE(x.device().is_cpu(), "leaf_forward: CPU kernel got a non-CPU `x`");
  const at::Tensor xc = contig(x), Wc = contig(W), cc = contig(c), w1c = contig(w1), b1c = contig(b1), w2c = contig(w2),
                   b2c = b2 ? contig(*b2) : at::Tensor();
  at::Tensor y = at::detail::empty_cpu({x.size(0), O}, dt, std::nullopt, std::nullopt, std::nullopt, std::nullopt);
  AT_DISPATCH_FLOATING_TYPES(dt, "leaf_forward_cpu", [&] {
    using S = scalar_t;
    using A = scalar_t;
    const LeafArgs<A> T{Wc.data_ptr<A>(), cc.data_ptr<A>(), w1c.data_ptr<A>(), b1c.data_ptr<A>(), w2c.data_ptr<A>(),
                         b2 ? b2c.data_ptr<A>() : nullptr, I, O, l, d, act};
    FFF_ISA_CALL(leaf_forward, T, xc.data_ptr<A>(), y.data_ptr<A>(), x.size(0));
  });
  return y;
}

}  // namespace fff_nb

#ifndef FFF_BINDING_ONLY  // (see fff_cpu.h)
TORCH_LIBRARY(fff_nb, m) {
  m.def("tree_forward(Tensor x, Tensor X, Tensor Y, Tensor? b, int n_trees, int act) -> Tensor");
  m.def("tree_backward(Tensor grad_y, Tensor x, Tensor X, Tensor Y, Tensor? b, int n_trees, int act) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("tree_forward_q(Tensor x, Tensor X, Tensor Y, Tensor? sX, Tensor? sY, Tensor? b, int n_trees, int act) -> Tensor");
  m.def("_isas() -> str[]", &fff_nb::isas);          // instruction sets of this CPU's kernels, best first
  m.def("_set_isa(str name) -> str", &fff_nb::set_isa);  // force one ('' to query); returns the previous
  m.def("leaf_forward(Tensor x, Tensor W, Tensor c, Tensor w1, Tensor b1, Tensor w2, Tensor? b2, int act) -> Tensor");
}

TORCH_LIBRARY_IMPL(fff_nb, CPU, m) {
  m.impl("tree_forward", &fff_nb::tree_forward_cpu);
  m.impl("tree_backward", &fff_nb::tree_backward_cpu);
  m.impl("tree_forward_q", &fff_nb::tree_forward_q_cpu);
  m.impl("leaf_forward", &fff_nb::leaf_forward_cpu);
}
#endif

namespace fff_nb {

// Whether `h` is exactly a Tensor or a Parameter: a subclass may override `__torch_function__` or
// `__torch_dispatch__`, and must see the call through the dispatcher. (Two pointer comparisons, no attribute lookup.)
static bool plain_tensor(pybind11::handle h) {
  static const PyTypeObject* const parameter =
      reinterpret_cast<PyTypeObject*>(pybind11::object(pybind11::module_::import("torch.nn").attr("Parameter")).release().ptr());
  const PyTypeObject* t = Py_TYPE(h.ptr());
  return t == reinterpret_cast<PyTypeObject*>(THPVariableClass) || t == parameter;
}

// Whether a forward may skip the dispatcher: no gradient to record, no dispatch mode (FakeTensorMode, ...) and no
// functorch transform active, CPU tensors. (Tensor subclasses are `plain_tensor`'s to check, torch.compile the
// Python caller's.)
static bool direct_ok(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, const std::optional<at::Tensor>& b) {
  if (c10::GradMode::is_enabled() && (x.requires_grad() || X.requires_grad() || Y.requires_grad() || (b && b->requires_grad())))
    return false;
  if (c10::impl::TorchDispatchModeTLS::stack_len() > 0) return false;
  const auto inc = c10::impl::tls_local_dispatch_key_set().included_;  // as torch._C._are_functorch_transforms_active
  if (inc.has(c10::DispatchKey::FuncTorchDynamicLayerFrontMode) || inc.has(c10::DispatchKey::FuncTorchDynamicLayerBackMode))
    return false;
  return x.is_cpu();
}

// Multiply-adds of a forward, B * n_trees * levels * (nIn + nOut); 0 for malformed arguments (the kernel raises).
static int64_t forward_work(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, int64_t n_trees) {
  if (x.dim() != 2 || X.dim() != 2 || Y.dim() != 2 || n_trees < 1) return 0;
  return x.size(0) * n_trees * std::max(0, fff::tree_levels(X.size(0) / n_trees)) * (X.size(1) + Y.size(1));
}

// The eager inference entry point: the CPU kernel without the dispatcher, or None when `direct_ok` says the call
// must go through it. The GIL is released only for calls long enough (>= ~2^20 multiply-adds, tens of us) for
// another Python thread to use it; releasing and taking it back costs ~0.1 us, 2% of a batch-8 call.
static pybind11::object tree_forward_direct(pybind11::handle x_, pybind11::handle X_, pybind11::handle Y_,
                                            pybind11::handle b_, int64_t n_trees, int64_t act) {
  if (!plain_tensor(x_) || !plain_tensor(X_) || !plain_tensor(Y_) || !(b_.is_none() || plain_tensor(b_)))
    return pybind11::none();
  const at::Tensor& x = THPVariable_Unpack(x_.ptr());
  const at::Tensor& X = THPVariable_Unpack(X_.ptr());
  const at::Tensor& Y = THPVariable_Unpack(Y_.ptr());
  const std::optional<at::Tensor> b = b_.is_none() ? std::nullopt : std::optional<at::Tensor>(THPVariable_Unpack(b_.ptr()));
  if (!direct_ok(x, X, Y, b)) return pybind11::none();
  if (forward_work(x, X, Y, n_trees) < (int64_t(1) << 20)) return pybind11::cast(tree_forward_cpu(x, X, Y, b, n_trees, act));
  at::Tensor y;
  {
    pybind11::gil_scoped_release no_gil;
    y = tree_forward_cpu(x, X, Y, b, n_trees, act);
  }
  return pybind11::cast(std::move(y));
}

// tree_forward_direct for a compressed tree (tree_forward_q's arguments); None when the call needs the dispatcher.
static pybind11::object tree_forward_q_direct(pybind11::handle x_, pybind11::handle X_, pybind11::handle Y_,
                                              pybind11::handle sX_, pybind11::handle sY_, pybind11::handle b_,
                                              int64_t n_trees, int64_t act) {
  for (auto h : {x_, X_, Y_, sX_, sY_, b_})
    if (!(h.is_none() || plain_tensor(h))) return pybind11::none();
  if (x_.is_none() || X_.is_none() || Y_.is_none()) return pybind11::none();
  const auto opt = [](pybind11::handle h) {
    return h.is_none() ? std::nullopt : std::optional<at::Tensor>(THPVariable_Unpack(h.ptr()));
  };
  const at::Tensor& x = THPVariable_Unpack(x_.ptr());
  const at::Tensor& X = THPVariable_Unpack(X_.ptr());
  const at::Tensor& Y = THPVariable_Unpack(Y_.ptr());
  const auto sX = opt(sX_), sY = opt(sY_), b = opt(b_);
  if (!direct_ok(x, X, Y, b)) return pybind11::none();
  if (forward_work(x, X, Y, n_trees) < (int64_t(1) << 20)) return pybind11::cast(tree_forward_q_cpu(x, X, Y, sX, sY, b, n_trees, act));
  at::Tensor y;
  {
    pybind11::gil_scoped_release no_gil;
    y = tree_forward_q_cpu(x, X, Y, sX, sY, b, n_trees, act);
  }
  return pybind11::cast(std::move(y));
}

}  // namespace fff_nb

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("tree_forward_direct", &fff_nb::tree_forward_direct,
        "the CPU kernel of fff_nb::tree_forward without the dispatcher, or None if the call needs the dispatcher");
  m.def("tree_forward_q_direct", &fff_nb::tree_forward_q_direct,
        "the CPU kernel of fff_nb::tree_forward_q without the dispatcher, or None if the call needs the dispatcher");
  m.def("splits_tree", &fff_nb::splits_tree, pybind11::arg("B"), pybind11::arg("x_row_bytes"), pybind11::arg("levels"),
        pybind11::arg("threads"),
        "whether a forward of B tokens through trees of `levels` levels on `threads` threads gives each thread subtrees "
        "instead of a slice of the batch");
}
