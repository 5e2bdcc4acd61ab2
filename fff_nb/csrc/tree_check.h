// tree_check.h: argument checks of the tree ops shared by the CPU and CUDA kernels (host code only): every call's
// arguments (check_tree_args) and the backward's grad_y (check_grad_y). The Python wrappers give friendlier messages
// first; these keep direct op calls memory-safe. Each kernel adds its device check.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <optional>
#include "tree.h"

namespace fff_nb {

// Shapes, sizes and `act` of a tree-op call (any storage of X, Y); returns the number of levels per tree.
inline int check_tree_shapes(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, int64_t n_trees, int64_t act) {
  TORCH_CHECK_VALUE(x.dim() == 2, "`x` must be 2-D (B, nIn), got shape ", x.sizes());
  TORCH_CHECK_VALUE(X.dim() == 2 && Y.dim() == 2, "`X` and `Y` must be 2-D, got shapes ", X.sizes(), " and ", Y.sizes());
  TORCH_CHECK_VALUE(x.size(1) == X.size(1), "`x` must have shape (..., nIn) with nIn=", X.size(1), ", got shape ", x.sizes());
  TORCH_CHECK_VALUE(Y.size(0) == X.size(0), "`X` and `Y` must have the same number of rows, got ", X.size(0), " and ", Y.size(0));
  TORCH_CHECK_VALUE(n_trees >= 1 && n_trees < (int64_t(1) << 31), "`n_trees` must be a positive int, got ", n_trees);
  TORCH_CHECK_VALUE(X.size(0) % n_trees == 0, "`X` has ", X.size(0), " rows, not a multiple of `n_trees`=", n_trees);
  const int L = fff::tree_levels(X.size(0) / n_trees);
  TORCH_CHECK_VALUE(L > 0, "a complete tree has 2**depth - 1 nodes, got ", X.size(0) / n_trees, " rows per tree");
  TORCH_CHECK_VALUE(act == fff::kIdentity || act == fff::kGelu, "`act` must be 0 (identity) or 1 (gelu), got ", act);
  return L;
}

// Shapes, sizes, dtypes and `act` of a tree-op call; returns the number of levels per tree.
inline int check_tree_args(const at::Tensor& x, const at::Tensor& X, const at::Tensor& Y, const std::optional<at::Tensor>& b,
                           int64_t n_trees, int64_t act) {
  const int L = check_tree_shapes(x, X, Y, n_trees, act);
  TORCH_CHECK_TYPE(x.is_floating_point(), "`x` must be a floating-point tensor, got ", x.scalar_type());
  TORCH_CHECK_TYPE(X.scalar_type() == x.scalar_type() && Y.scalar_type() == x.scalar_type(),
                   "`x`, `X` and `Y` must have the same dtype, got ", x.scalar_type(), ", ", X.scalar_type(), ", ", Y.scalar_type());
  if (b) {
    TORCH_CHECK_VALUE(b->dim() == 1 && b->size(0) == X.size(0), "`b` must have shape (", X.size(0), ",), got ", b->sizes());
    TORCH_CHECK_TYPE(b->scalar_type() == x.scalar_type(), "`b` must have dtype ", x.scalar_type(), ", got ", b->scalar_type());
  }
  return L;
}

// `grad_y` of a backward call: shape (B, nOut), the dtype and device of `x`. (After `check_tree_args`.)
inline void check_grad_y(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& Y) {
  TORCH_CHECK_VALUE(grad_y.dim() == 2 && grad_y.size(0) == x.size(0) && grad_y.size(1) == Y.size(1),
                    "`grad_y` must have shape (", x.size(0), ", ", Y.size(1), "), got ", grad_y.sizes());
  TORCH_CHECK_TYPE(grad_y.scalar_type() == x.scalar_type(), "`grad_y` must have dtype ", x.scalar_type(), ", got ", grad_y.scalar_type());
  TORCH_CHECK_VALUE(grad_y.device() == x.device(), "`grad_y` is on ", grad_y.device(), " but `x` is on ", x.device());
}

}  // namespace fff_nb
