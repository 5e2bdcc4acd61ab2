#!/usr/bin/env python
"""Compile-check every `fff_nb/csrc/*.cu` with nvcc for sm_80 and sm_90, with torch's include paths and flags, on a
machine without a GPU or a CUDA build of torch. The CPU wheel lacks one CMake-generated header,
`c10/cuda/impl/cuda_cmake_macros.h`; a one-line stub of it is written to a temporary include directory.

--emulate also runs the kernels of `fff_cuda.cu` on the CPU: the file is compiled as C++ with `cuda_emu.h` (below),
which runs every CUDA thread of a block as a fiber on one OS thread (`__syncthreads` a round of the fibers,
`__shfl_xor_sync` an exchange through memory between two rounds), and its host code runs on CPU tensors. The results are checked against
`fff_nb.core.tree_torch` on the shared test set of `fff_nb.testing` (forward and gradients, every dtype) and the
backward for bitwise determinism. It exercises the kernels' indexing, reductions, branches and launch geometry, not
the GPU's memory model or timing.
Usage: python tools/check_cuda.py [--arch 80 90] [--ptxas] [--emulate] [FILE.cu ...]   (exit status 1 on failure)"""
import argparse, shutil, subprocess, sys, sysconfig, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB = "#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n"
# the flags torch.utils.cpp_extension passes to nvcc (CUDA builds of torch 2.x)
FLAGS = ['-std=c++20', '-O3', '--expt-relaxed-constexpr', '-D__CUDA_NO_HALF_OPERATORS__', '-D__CUDA_NO_HALF_CONVERSIONS__',
         '-D__CUDA_NO_BFLOAT16_CONVERSIONS__', '-D__CUDA_NO_HALF2_OPERATORS__', '--compiler-options', '-fPIC',
         '-diag-suppress', '3189']  # 3189: torch/python.h's `module` parsed as an identifier (harmless)

def nvcc_command(src:Path, archs, stub_dir:str, ptxas:bool=False) -> list:
    "The nvcc command that compiles `src` for each of `archs` (e.g. 90 -> sm_90) without linking."
    import torch.utils.cpp_extension as ext
    incs = ['-I', stub_dir, '-I', str(src.parent)]
    for p in ext.include_paths() + [sysconfig.get_paths()['include']]: incs += ['-isystem', p]
    gen = [f'-gencode=arch=compute_{a},code=sm_{a}' for a in archs]
    return ['nvcc', *FLAGS, *gen, *(['-Xptxas', '-v'] if ptxas else []), *incs, '-c', str(src), '-o', '/dev/null']

def check(files, archs=(80, 90), ptxas:bool=False) -> bool:
    "Compile each of `files` for `archs`, printing one pass/fail line per file (and nvcc's errors); True if all pass."
    if shutil.which('nvcc') is None: print('check_cuda: FAIL: nvcc not found on PATH'); return False
    ok = True
    with tempfile.TemporaryDirectory() as stub:
        (Path(stub) / 'c10/cuda/impl').mkdir(parents=True)
        (Path(stub) / 'c10/cuda/impl/cuda_cmake_macros.h').write_text(STUB)
        for f in files:
            t0 = time.time()
            r = subprocess.run(nvcc_command(Path(f), archs, stub, ptxas), capture_output=True, text=True)
            status = 'pass' if r.returncode == 0 else 'FAIL'
            print(f"check_cuda: {status}: {Path(f).relative_to(ROOT) if Path(f).is_relative_to(ROOT) else f} "
                  f"(sm_{', sm_'.join(map(str, archs))}; {time.time() - t0:.1f} s)")
            if r.returncode or ptxas: print(r.stderr.strip())
            ok &= r.returncode == 0
    return ok

EMU_H = r"""// cuda_emu.h: just enough of CUDA to run fff_cuda.cu's kernels on the CPU (tools/check_cuda.py --emulate).
// Each CUDA thread of a block is a fiber (ucontext) on one OS thread; a scheduler resumes them round-robin, so
// __syncthreads is "yield until every live thread of the block has yielded". __shfl_xor_sync is an exchange through
// memory between two such barriers, so every thread of the block must reach it (true of fff_cuda.cu's walk kernel).
#pragma once
#include <ucontext.h>
#include <cstring>
#include <exception>
#include <functional>
#include <tuple>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one block runs at a time, so a static is the block's shared memory
#define C10_CUDA_KERNEL_LAUNCH_CHECK() ((void)0)
struct dim3 { unsigned x, y, z; dim3(unsigned x = 1, unsigned y = 1, unsigned z = 1) : x(x), y(y), z(z) {} };
using cudaStream_t = void*;
namespace fff_emu {
constexpr size_t kStack = 256 * 1024;
inline dim3 gridDim, blockDim, threadIdx, blockIdx;
inline ucontext_t sched;
inline std::vector<ucontext_t> ctx;
inline std::vector<std::vector<char>> stacks;
inline std::vector<char> done;
inline unsigned cur;
inline double lanes[1024];
inline const std::function<void()>* body;
inline std::exception_ptr err;
inline void entry() {
  try { (*body)(); } catch (...) { err = std::current_exception(); }
  done[cur] = 1;  // returning resumes `sched` (uc_link)
}
inline void yield() { swapcontext(&ctx[cur], &sched); }
inline void run(dim3 g, dim3 b, const std::function<void()>& fn) {
  gridDim = g, blockDim = b, body = &fn;
  const unsigned n = b.x * b.y * b.z;
  ctx.resize(n), stacks.resize(n), done.assign(n, 0);
  for (auto& s : stacks) s.resize(kStack);
  for (unsigned bz = 0; bz < g.z; ++bz) for (unsigned by = 0; by < g.y; ++by) for (unsigned bx = 0; bx < g.x; ++bx) {
    blockIdx = dim3(bx, by, bz);
    done.assign(n, 0);
    for (unsigned t = 0; t < n; ++t) {
      getcontext(&ctx[t]);
      ctx[t].uc_stack.ss_sp = stacks[t].data(), ctx[t].uc_stack.ss_size = kStack, ctx[t].uc_link = &sched;
      makecontext(&ctx[t], entry, 0);
    }
    for (unsigned live = n; live;) {  // one round = every live thread runs to its next barrier (or its end)
      live = 0;
      for (unsigned t = 0; t < n; ++t) {
        if (done[t]) continue;
        cur = t, threadIdx = dim3(t % b.x, t / b.x % b.y, t / (b.x * b.y));
        swapcontext(&sched, &ctx[t]);
        live += !done[t];
      }
      if (err) { auto e = err; err = nullptr; std::rethrow_exception(e); }
    }
  }
}
template <typename... P> struct Launch {
  dim3 g, b; void (*k)(P...);
  template <typename... A> void operator()(A&&... a) const {
    std::tuple<P...> args(std::forward<A>(a)...);
    run(g, b, [&] { std::apply(k, args); });
  }
};
template <typename... P> Launch<P...> launch(dim3 g, dim3 b, void (*k)(P...)) { return {g, b, k}; }
}  // namespace fff_emu
using fff_emu::threadIdx; using fff_emu::blockIdx; using fff_emu::blockDim; using fff_emu::gridDim;
inline void __syncthreads() { fff_emu::yield(); }
template <typename T> T __shfl_xor_sync(unsigned, T v, int mask) {
  static_assert(sizeof(T) <= sizeof(double));
  const unsigned t = fff_emu::cur;
  std::memcpy(&fff_emu::lanes[t], &v, sizeof(T));
  fff_emu::yield();
  T r;
  std::memcpy(&r, &fff_emu::lanes[(t & ~31u) | ((t % 32) ^ unsigned(mask))], sizeof(T));
  fff_emu::yield();
  return r;
}
#define FFF_LAUNCH(grid, block, stream, ...) fff_emu::launch(grid, block, &__VA_ARGS__)
namespace c10::cuda {
struct CUDAGuard { explicit CUDAGuard(c10::Device) {} };
inline cudaStream_t getCurrentCUDAStream() { return nullptr; }
}
"""

EMU_BIND = r"""#define FFF_CUDA_EMULATE 1
#include "fff_cuda.cu"
#include <torch/extension.h>
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &fff_nb::tree_forward_cuda);
  m.def("backward", &fff_nb::tree_backward_cuda);
}
"""

def emulate(verbose:bool=False) -> bool:
    "Build `fff_cuda.cu` for CPU threads with `cuda_emu.h` and check it against the torch reference; True if it agrees."
    import hashlib, torch
    from torch.utils.cpp_extension import load
    sys.path.insert(0, str(ROOT))
    from fff_nb.testing import TEST_CASES, check_tree_op, rand_tree
    from fff_nb.core import tree_torch
    csrc = ROOT / 'fff_nb/csrc'
    h = hashlib.sha256((EMU_H + EMU_BIND).encode() + b''.join(f.read_bytes() for f in sorted(csrc.glob('*')) if f.suffix in ('.h', '.cu')))
    build = Path(tempfile.gettempdir()) / f'fff_cuda_emu_{h.hexdigest()[:10]}'
    build.mkdir(exist_ok=True)
    (build / 'cuda_emu.h').write_text(EMU_H); (build / 'emu.cpp').write_text(EMU_BIND)
    t0 = time.time()
    mod = load(name=build.name, sources=[str(build / 'emu.cpp')], extra_include_paths=[str(build), str(csrc)],
               extra_cflags=['-O1', '-std=c++20'], build_directory=str(build), verbose=verbose)
    print(f"check_cuda: emulator built ({time.time() - t0:.1f} s)")
    acts = {'identity': 0, 'gelu': 1}
    fwd = lambda x, X, Y, b, K, act: mod.forward(x, X, Y, b, K, acts[act])
    def bwd(g, x, X, Y, b, K, act):
        dx, dX, dY, db = mod.backward(g, x, X, Y, b, K, acts[act])
        return dx, dX, dY, (db if b is not None else None)
    t0 = time.time()
    try:
        check_tree_op(fwd, bwd, 'cpu', torch.float64)
        check_tree_op(fwd, bwd, 'cpu', torch.float32, eps=1e-4)
        X, Y, b = rand_tree(40, 24, 4, n_trees=2, dtype=torch.float32, seed=3)
        x = torch.randn(70, 40, generator=torch.Generator().manual_seed(4))
        for dt, eps in ((torch.bfloat16, 2e-2), (torch.float16, 2e-3)):
            args = (x.to(dt), X.to(dt), Y.to(dt), b.to(dt), 2, 'gelu')
            got, want = fwd(*args), tree_torch(*args)
            assert got.dtype == dt and (got.float() - want.float()).abs().max() <= eps * want.abs().max(), dt
        g = torch.randn(70, 24)
        r1, r2 = (bwd(g, x, X, Y, b, 2, 'gelu') for _ in range(2))
        assert all(torch.equal(p, q) for p, q in zip(r1, r2)), 'backward is not deterministic'
        xn = x[:3].clone(); xn[1, 0] = float('nan')
        yn = fwd(xn, X, Y, b, 2, 'gelu')
        assert yn[1].isnan().all() and not yn[[0, 2]].isnan().any(), 'NaN routing'
    except AssertionError as e:
        print(f"check_cuda: FAIL: emulated kernels disagree with tree_torch: {e!r:.600}"); return False
    print(f"check_cuda: pass: emulated fff_cuda.cu agrees with tree_torch on {len(TEST_CASES)} cases x float64/float32, "
          f"bfloat16/float16, NaN routing, deterministic backward ({time.time() - t0:.1f} s)")
    return True

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('files', nargs='*', help='.cu files (default: every fff_nb/csrc/*.cu)')
    ap.add_argument('--arch', nargs='+', type=int, default=[80, 90], help='SM versions (default: 80 90)')
    ap.add_argument('--ptxas', action='store_true', help="print ptxas's register and spill report")
    ap.add_argument('--emulate', action='store_true', help="also run fff_cuda.cu's kernels on CPU threads against the reference")
    ap.add_argument('--no-compile', action='store_true', help="skip the nvcc compile check (with --emulate)")
    a = ap.parse_args()
    files = [Path(f).resolve() for f in a.files] or sorted((ROOT / 'fff_nb/csrc').glob('*.cu'))
    if not files: print('check_cuda: no .cu files'); sys.exit(1)
    ok = a.no_compile or check(files, a.arch, a.ptxas)
    if a.emulate: ok = emulate() and ok
    sys.exit(0 if ok else 1)
