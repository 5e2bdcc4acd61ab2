"""Offline stand-in for `nbdev_docs` / `nbdev_readme` where Quarto cannot be installed.

nbdev's own preprocessing (`nbdev_proc_nbs` -> `_proc/`: hidden cells dropped, `show_doc` rendered, front matter
added), then nbconvert: one HTML page per notebook in `_docs/`, and README.md from the readme notebook.
Usage: python tools/docs_offline.py [--no-readme]
"""
import json, shutil, subprocess, sys
import yaml
from pathlib import Path
import nbformat
from nbconvert import HTMLExporter, MarkdownExporter
from nbdev.config import get_config

def front_matter(nb) -> dict:
    "Pop the raw front-matter cell nbdev adds and return its keys."
    fm = {}
    for c in list(nb.cells):
        if c.cell_type == 'raw' and c.source.startswith('---'):
            fm.update(yaml.safe_load(c.source.strip().strip('-')) or {})
            nb.cells.remove(c)
    return fm

def load(p: Path):
    "Read a processed notebook; drop `#|` directive lines (Quarto's job), hiding the source of `echo: false` cells."
    d = json.loads(p.read_text())
    for c in d['cells']:
        c.get('metadata', {}).pop('execution', None)  # float timings fail nbformat validation
        if c['cell_type'] != 'code': continue
        lines = ''.join(c['source']).splitlines(keepends=True)
        directives = [l for l in lines if l.startswith('#|')]
        c['source'] = ''.join(l for l in lines if not l.startswith('#|')).lstrip('\n')
        if any(l.replace(' ', '').startswith('#|echo:false') for l in directives):
            c['metadata'].setdefault('transient', {})['remove_source'] = True
    return nbformat.reads(json.dumps(d), as_version=4)

def main(readme=True):
    cfg = get_config()
    subprocess.run(['nbdev_proc_nbs'], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc, out = cfg.config_path/'_proc', cfg.config_path/cfg.doc_path
    out.mkdir(exist_ok=True)
    pages = []
    for p in sorted(proc.rglob('*.ipynb')):
        nb = load(p); fm = front_matter(nb)
        name = Path(fm.get('output-file', p.stem + '.html')).stem
        nb.metadata['title'] = fm.get('title', name)
        (out/f'{name}.html').write_text(HTMLExporter(template_name='lab').from_notebook_node(nb)[0])
        pages.append(name)
        if readme and p.name == Path(cfg.readme_nb).name:
            md, res = MarkdownExporter().from_notebook_node(nb, resources={'output_files_dir': 'README_files'})
            files = cfg.config_path/'README_files'
            shutil.rmtree(files, ignore_errors=True)
            for fn, data in res.get('outputs', {}).items():
                (cfg.config_path/fn).parent.mkdir(parents=True, exist_ok=True); (cfg.config_path/fn).write_bytes(data)
            head = f"# {fm.get('title', cfg.lib_name)}\n\n" + (f"> {fm['description']}\n\n" if fm.get('description') else '')
            (cfg.config_path/'README.md').write_text(head + md.lstrip())
    print(f"wrote {len(pages)} pages to {out}: {', '.join(pages)}")

if __name__ == '__main__': main(readme='--no-readme' not in sys.argv)
