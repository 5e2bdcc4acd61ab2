"""Execute notebooks in place and store their outputs (what nbval compares against), as a user's JupyterLab run would.

Cells that nbdev would skip (`#| eval: false`, or a `#| notest`/`#| cuda`/`#| slow` flag) are not executed, and keep
their stored outputs. The environment matches the test run (IN_TEST=1, inline plots). Usage:
    python tools/run_nbs.py [nbs/00_core.ipynb ...]      # default: every notebook in nbs/
Then `nbdev_clean` before committing.
"""
import os, re, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient

SKIP_FLAGS = re.compile(r'^#\|\s*(eval:\s*false|notest|cuda|slow)\b', re.M)

def skipped(cell) -> bool:
    head = []
    for line in cell.source.splitlines():
        if not line.startswith('#|'): break
        head.append(line)
    return bool(SKIP_FLAGS.search('\n'.join(head)))

def run(path: Path, timeout=1800):
    nb = nbformat.read(path, as_version=4)
    tagged = []
    for c in nb.cells:
        if c.cell_type == 'code' and skipped(c):
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
    paths = [Path(p) for p in sys.argv[1:]] or sorted(p for p in Path('nbs').glob('*.ipynb') if not p.name.startswith('_'))
    for p in paths: run(p)
