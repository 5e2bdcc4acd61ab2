"""Execute a notebook's code cells in one plain Python process and store their text outputs, without a Jupyter kernel.

For machines that have torch but no Jupyter stack (the lent GPU machine: no IPython, nbclient or nbdev there; only
`fastcore`, carried as a wheel, is needed by the notebooks). Otherwise it follows `tools/run_nbs.py`: cells that
nbdev would skip keep their stored outputs unless their flag is given with --flags; cells that need nbdev itself
(`show_doc`, `nbdev_export`) are skipped, and nbdev imports dropped. Printed text becomes a stream output, a final expression its repr, and an
exception an error output; the run goes on with the next cell and exits non-zero if any cell failed. Usage:
    python tools/run_cells.py [--flags cuda,slow] nbs/03_cuda.ipynb [...]
"""
import ast, contextlib, io, json, os, re, sys, tempfile, time, traceback
from pathlib import Path

FLAGS = {'notest', 'cuda', 'slow'}
NEEDS_NBDEV = re.compile(r'show_doc\(|nbdev_export\(')
NBDEV_IMPORT = re.compile(r'^(from nbdev\S* import .*|import nbdev.*)$', re.M)

def flag_skipped(src: str, run_flags=()) -> bool:
    "Would nbdev_test skip this cell (`#| eval: false`, or a flag not switched on)? (Also `tools/run_nbs.py`'s rule.)"
    for line in src.splitlines():
        if not line.startswith('#|'): break
        d = line[2:].strip()
        if re.match(r'eval:\s*false', d): return True
        if d in FLAGS and d not in run_flags: return True
    return False

def skipped(src: str, run_flags=()) -> bool:
    "Is this cell left out here: skipped by nbdev_test, or in need of nbdev itself?"
    return flag_skipped(src, run_flags) or bool(NEEDS_NBDEV.search(src))

class Tee(io.StringIO):
    "Collect what a cell prints and echo it to the console."
    def __init__(self, stream): super().__init__(); self.stream = stream
    def write(self, s): self.stream.write(s); self.stream.flush(); return super().write(s)

def run_cell(src: str, ns: dict, fname: str) -> list:
    "Execute `src` in `ns`, as if read from file `fname` (so `inspect.getsource`, which `triton.jit` needs, works); its outputs in notebook format."
    Path(fname).write_text(src)
    tree = ast.parse(src, fname)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    out, err, outputs = Tee(sys.__stdout__), Tee(sys.__stderr__), []
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(tree, fname, 'exec'), ns)
            value = eval(compile(ast.Expression(last.value), fname, 'eval'), ns) if last else None
    except Exception as e:
        value, exc = None, e
    else: exc = None
    for name, s in (('stdout', out.getvalue()), ('stderr', err.getvalue())):
        if s: outputs.append(dict(output_type='stream', name=name, text=s.splitlines(keepends=True)))
    if value is not None:
        outputs.append(dict(output_type='execute_result', execution_count=None, metadata={}, data={'text/plain': repr(value).splitlines(keepends=True)}))
    if exc is not None:
        tb = traceback.format_exception(exc)
        print(''.join(tb), file=sys.__stderr__)
        outputs.append(dict(output_type='error', ename=type(exc).__name__, evalue=str(exc), traceback=tb))
    return outputs

def run(path: Path, run_flags=()) -> int:
    "Run `path`'s cells in order in a fresh namespace, store the outputs; the number of failed cells."
    nb = json.loads(path.read_text())
    cwd, t0, failed = os.getcwd(), time.time(), 0
    os.chdir(path.parent)
    ns, cells = {'__name__': '__main__'}, Path(tempfile.mkdtemp(prefix=path.stem + '_cells_'))
    try:
        for i, c in enumerate(nb['cells']):
            src = ''.join(c['source'])
            if c['cell_type'] != 'code' or skipped(src, run_flags): continue
            print(f"--- {path.name} cell {i}", file=sys.__stderr__)
            c['outputs'] = run_cell(NBDEV_IMPORT.sub('pass', src), ns, str(cells / f'cell{i}.py'))
            failed += any(o['output_type'] == 'error' for o in c['outputs'])
    finally: os.chdir(cwd)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    print(f"{path}: {time.time() - t0:.1f}s, {failed} failed cell(s)", file=sys.__stderr__)
    return failed

if __name__ == '__main__':
    os.environ['IN_TEST'] = '1'; os.environ.setdefault('MPLBACKEND', 'Agg')
    args, run_flags = sys.argv[1:], ()
    if args[:1] == ['--flags']: run_flags, args = tuple(args[1].split(',')), args[2:]
    sys.exit(1 if sum(run(Path(p), run_flags) for p in args) else 0)
