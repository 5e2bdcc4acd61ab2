"""Execute notebooks in place and store their outputs (what nbval compares against), as a user's JupyterLab run would.

Cells that nbdev would skip (`#| eval: false`, or a `#| notest`/`#| cuda`/`#| slow` flag) are not executed, and keep
their stored outputs, unless their flag is given with --flags (e.g. `--flags slow` runs the full benchmarks and stores
their tables). The environment matches the test run (IN_TEST=1, inline plots). Usage:
    python tools/run_nbs.py [--flags slow,cuda] [nbs/00_core.ipynb ...]      # default: every notebook in nbs/
Then `nbdev_clean` before committing.
"""
import os, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from run_cells import flag_skipped  # the one rule for which cells nbdev_test skips (tools/ is on sys.path here)

def run(path: Path, run_flags=(), timeout=3600):
    nb = nbformat.read(path, as_version=4)
    tagged = []
    for c in nb.cells:
        if c.cell_type == 'code' and flag_skipped(c.source, run_flags):
            c.metadata.setdefault('tags', []).append('skip-execution'); tagged.append(c)
    t0 = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}},
                   skip_cells_with_tag='skip-execution').execute()
    for c in tagged:
        c.metadata['tags'].remove('skip-execution')
        if not c.metadata['tags']: del c.metadata['tags']
    nbformat.write(nb, path)
    print(f"{path}: {time.time() - t0:.1f}s")

if __name__ == '__main__':
    os.environ['IN_TEST'] = '1'; os.environ.pop('MPLBACKEND', None); os.environ.setdefault('OMP_NUM_THREADS', '2')
    args, run_flags = sys.argv[1:], ()
    if args[:1] == ['--flags']: run_flags, args = tuple(args[1].split(',')), args[2:]
    paths = [Path(p) for p in args] or sorted(p for p in Path('nbs').glob('*.ipynb') if not p.name.startswith('_'))
    for p in paths: run(p, run_flags)
