"""Offline stand-in for `nbdev_docs` / `nbdev_readme` where Quarto cannot be installed.

nbdev's own preprocessing (`nbdev_proc_nbs` -> `_proc/`: hidden cells dropped, `show_doc` rendered, front matter
added), then nbconvert: one HTML page per notebook in `_docs/`, and README.md from the readme notebook.
Usage: python tools/docs_offline.py [--no-readme]
"""
import json, re, shutil, subprocess, sys
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
        for o in c.get('outputs', []):   # Quarto link attributes from show_doc, e.g. [source](url){target="_blank"}
            md = o.get('data', {}).get('text/markdown')
            if md: o['data']['text/markdown'] = re.sub(r'\)\{[^}]*\}', ')', ''.join(md))
        lines = ''.join(c['source']).splitlines(keepends=True)
        directives = [l for l in lines if l.startswith('#|')]
        c['source'] = ''.join(l for l in lines if not l.startswith('#|')).lstrip('\n')
        if any(l.replace(' ', '').startswith('#|echo:false') for l in directives):
            c['metadata'].setdefault('transient', {})['remove_source'] = True
    return nbformat.reads(json.dumps(d), as_version=4)

MATHJAX = 'mathjax@3.2.2'
MATHJAX_CONFIG = ("<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], "
                  "displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true}};</script>\n")

def local_mathjax(out: Path) -> str | None:
    "Unpack MathJax (from the npm registry, once) next to the pages so formulas render offline; its URL, or None."
    js = out/'mathjax'/'es5'/'tex-chtml-full.js'
    if not js.exists() and shutil.which('npm'):
        import tarfile, tempfile
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run(['npm', 'pack', MATHJAX, '--silent'], cwd=d, capture_output=True, text=True)
            tgz = Path(d)/r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None
            if tgz and tgz.exists():
                with tarfile.open(tgz) as t:
                    for m in t.getmembers():
                        if m.name.startswith('package/es5/'):
                            m.name = 'mathjax/' + m.name[len('package/'):]; t.extract(m, out)
    return 'mathjax/es5/tex-chtml-full.js?config=TeX-AMS_CHTML-full' if js.exists() else None

def main(readme=True):
    cfg = get_config()
    shutil.rmtree(cfg.config_path/'_proc', ignore_errors=True)  # nbdev_proc_nbs skips notebooks it thinks unchanged: start clean
    subprocess.run(['nbdev_proc_nbs'], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc, out = cfg.config_path/'_proc', cfg.config_path/cfg.doc_path
    out.mkdir(exist_ok=True)
    mathjax = local_mathjax(out)
    html = HTMLExporter(template_name='lab', **({'mathjax_url': mathjax} if mathjax else {}))
    pages = []
    for p in sorted(proc.rglob('*.ipynb')):
        nb = load(p); fm = front_matter(nb)
        name = Path(fm.get('output-file', p.stem + '.html')).stem
        nb.metadata['title'] = fm.get('title', name)
        page = html.from_notebook_node(nb)[0]
        if mathjax: page = page.replace('<script src="mathjax/', MATHJAX_CONFIG + '<script src="mathjax/', 1)
        (out/f'{name}.html').write_text(page)
        pages.append(name)
        if readme and p.name == Path(cfg.readme_nb).name:
            md, res = MarkdownExporter().from_notebook_node(nb, resources={'output_files_dir': 'README_files'})
            files = cfg.config_path/'README_files'
            shutil.rmtree(files, ignore_errors=True)
            for fn, data in res.get('outputs', {}).items():
                (cfg.config_path/fn).parent.mkdir(parents=True, exist_ok=True); (cfg.config_path/fn).write_bytes(data)
            head = f"# {fm.get('title', cfg.lib_name)}\n\n" + (f"> {fm['description']}\n\n" if fm.get('description') else '')
            (cfg.config_path/'README.md').write_text(head + md.lstrip())
    print(f"wrote {len(pages)} pages to {out}: {', '.join(pages)}" + ('' if mathjax else ' (no local MathJax: formulas stay as TeX)'))

if __name__ == '__main__': main(readme='--no-readme' not in sys.argv)
