"""Time the eager inference path of the current library against that of an earlier commit, side by side in one
process: the earlier commit's C++ sources (`git show REV:fff_nb/csrc/...`) built as a variant (`FFF_BINDING_ONLY`,
no ops registered) and called as its `tree_forward` called it. Backs 02_ops's numbers for fd6bf3c, which moved the
tensors' type checks from Python (`_plain`, below) into the binding. 1 thread, UltraFastBERT's tree, outputs checked
equal. Usage: python tools/compare_binding.py [REV (default 5e69aa3, the commit before)] [rounds (default 2)]"""
import subprocess, sys, tempfile
from pathlib import Path
import torch
from torch import Tensor, nn
from fff_nb import ops
from fff_nb.bench import interleaved_medians
from fff_nb.ultrafastbert import UltraFFF

def sources_at(rev:str, dest:Path) -> list:
    "The C++ sources and headers of `fff_nb/csrc` at commit `rev`, written to `dest`; returns the .cpp files."
    root = subprocess.run(['git', 'rev-parse', '--show-toplevel'], capture_output=True, text=True, check=True).stdout.strip()
    names = subprocess.run(['git', 'ls-tree', '--name-only', rev, 'fff_nb/csrc/'], cwd=root, capture_output=True,
                           text=True, check=True).stdout.split()
    for n in names:
        (dest / Path(n).name).write_bytes(subprocess.run(['git', 'show', f'{rev}:{n}'], cwd=root, capture_output=True, check=True).stdout)
    return sorted(dest.glob('fff_cpu*.cpp'))

_PLAIN = (Tensor, nn.Parameter)
def _plain(x, X, Y, b):  # the Python check of the wrapper before fd6bf3c
    return (type(x) in _PLAIN and type(X) in _PLAIN and type(Y) in _PLAIN and (b is None or type(b) in _PLAIN)
            and not torch.compiler.is_compiling())

if __name__ == '__main__':
    rev, rounds = (sys.argv[1] if len(sys.argv) > 1 else '5e69aa3'), int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        old = ops.build(sources_at(rev, Path(d)), defines={'FFF_BINDING_ONLY': 1})
    lib = ops.load_library()
    def old_forward(x, X, Y, b, n_trees, act):  # the earlier tree_forward's inference path
        if type(n_trees) is not int: raise TypeError(n_trees)
        a = ops.ACTS[act]
        if _plain(x, X, Y, b):
            y = old.tree_forward_direct(x, X, Y, b, n_trees, a)
            if y is not None: return y
        return ops._FWD(x, X, Y, b, n_trees, a)
    torch.manual_seed(0)
    X, Y, b = (UltraFFF(768, 768, 11, backend='cpp').eval()._parameters[k] for k in 'XYb')
    for B in (1, 8, 64):
        x = torch.randn(B, 768)
        with torch.no_grad():
            assert torch.equal(old_forward(x, X, Y, b, 1, 'gelu'), ops.tree_forward(x, X, Y, b, 1, 'gelu'))
            for _ in range(rounds):
                st = interleaved_medians({f'{rev} binding': lambda: old.tree_forward_direct(x, X, Y, b, 1, 1),
                                          'binding': lambda: lib.tree_forward_direct(x, X, Y, b, 1, 1),
                                          f'{rev} tree_forward': lambda: old_forward(x, X, Y, b, 1, 'gelu'),
                                          'tree_forward': lambda: ops.tree_forward(x, X, Y, b, 1, 'gelu')}, min_time=1.0)
                print(f"B={B:3d}: " + ', '.join(f"{k} {v * 1e6:.3f} us" for k, v in st.items())
                      + f"; tree_forward x{st[f'{rev} tree_forward'] / st['tree_forward']:.3f}", flush=True)
