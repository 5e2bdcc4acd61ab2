#!/usr/bin/env python
"""Compile-check every `fff_nb/csrc/*.cu` with nvcc for sm_80 and sm_90, with torch's include paths and flags, on a
machine without a GPU or a CUDA build of torch. The CPU wheel lacks one CMake-generated header,
`c10/cuda/impl/cuda_cmake_macros.h`; a one-line stub of it is written to a temporary include directory.
Usage: python tools/check_cuda.py [--arch 80 90] [--ptxas] [FILE.cu ...]   (exit status 1 if any file fails)"""
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

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('files', nargs='*', help='.cu files (default: every fff_nb/csrc/*.cu)')
    ap.add_argument('--arch', nargs='+', type=int, default=[80, 90], help='SM versions (default: 80 90)')
    ap.add_argument('--ptxas', action='store_true', help="print ptxas's register and spill report")
    a = ap.parse_args()
    files = [Path(f).resolve() for f in a.files] or sorted((ROOT / 'fff_nb/csrc').glob('*.cu'))
    if not files: print('check_cuda: no .cu files'); sys.exit(1)
    sys.exit(0 if check(files, a.arch, a.ptxas) else 1)
