"""Offline stand-in for `nbdev_docs` / `nbdev_readme` where Quarto cannot be installed.

nbdev's own preprocessing per notebook (its `FilterDefaults` processors -> `_proc/`: hidden cells dropped, `show_doc`
rendered, front matter from the first `# title` / `> description` cell), then nbconvert: one HTML page per notebook in
`_docs/` with the page's title and description, a sidebar linking every page (in `nbs/sidebar.yml`'s order) and MathJax,
and README.md from the readme notebook.

What runs: like nbdev, the cells that `show_doc` needs (exported cells, `show_doc` calls, import-only cells); unlike
nbdev, not the cells that mix imports with other code (tests, benchmarks: nbdev warns about them), which keep their
stored outputs. A notebook whose cells cannot run because an optional dependency is missing (a module of an extra
in settings.ini, e.g. `fff_nb[triton]`, `fff_nb[jax]`) is rendered without running anything: stored outputs, and API entries made from the exported source
(signature, docstring, source link), with a note. Each notebook
is processed in a fresh process, one per core at a time. Any other failure stops the build and prints the
notebook, the cell and the traceback.
Nothing tracked is written but README.md / README_files (nbdev would rewrite nbs/sidebar.yml, nbs/nbdev.yml and
fff_nb/_modidx.py): the build only warns when nbs/sidebar.yml is not what `nbdev_sidebar` makes.
Usage: python tools/docs_offline.py [--no-readme]   (any Python with the `[dev]` extra, e.g. .venv/bin/python)
"""
import ast, contextlib, html, io, json, multiprocessing, os, re, shutil, subprocess, sys, time, traceback, warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import yaml
from nbdev.config import get_config
from nbdev.doclinks import nbglob

# ---------------------------------------------------------------------------------------------- nbdev's processing
_SHOW_DIRS = {'export', 'exports', 'exporti', 'exec_doc'}

def _wanted(cell) -> bool:
    "nbdev's `_do_eval`, less the cells that mix imports with other code (tests, benchmarks)."
    from nbdev.processors import _do_eval, _show_docs
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # nbdev's "Found cells containing imports and other code"
        if not _do_eval(cell): return False
    if cell.directives_.keys() & _SHOW_DIRS: return True
    trees = cell.parsed_()
    return bool(_show_docs(trees)) or all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in trees)

def _procs(execute: bool):
    "nbdev's processors for docs (settings.ini `skip_procs` / `procs` respected), `exec_show_docs` replaced or dropped."
    from fastcore.xtras import str2bool
    from nbdev.processors import FilterDefaults, exec_show_docs
    class exec_doc_cells(exec_show_docs):
        "`exec_show_docs` running only the cells `_wanted` picks."
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, 'k'): return
            fm = getattr(self.nb, 'frontmatter_', {})
            if str2bool(fm.get('skip_showdoc', False)): return
            if _wanted(cell): self.k.cell(cell)
            if self.k.exc:
                raise RuntimeError(f"cell {cell.idx_} failed:\n{cell.source}") from self.k.exc
    res = []
    for p in FilterDefaults().procs():
        res.append(p if p is not exec_show_docs else exec_doc_cells if execute else static_show_docs)
    return res

def _sig(node, name: str) -> str:
    "`name (args)` of a def (or a class's `__init__` / dataclass fields), wrapped as nbdev's show_doc does."
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == '__init__'), None)
        args = (ast.unparse(init.args) if init else
                ', '.join(ast.unparse(n.target) + (f':{ast.unparse(n.annotation)}') + (f'={ast.unparse(n.value)}' if n.value else '')
                          for n in node.body if isinstance(n, ast.AnnAssign)))
    else: args = ast.unparse(node.args)
    args = re.sub(r'^(self|cls)(, |$)', '', args)
    parts, depth, cur = [], 0, ''  # the arguments, split at top-level commas
    for ch in args:
        depth += ch in '([{' and 1 or ch in ')]}' and -1 or 0
        if ch == ',' and depth == 0: parts.append(cur.strip()); cur = ''
        else: cur += ch
    if cur.strip(): parts.append(cur.strip())
    lines, line = [], f'{name} ('
    for i, a in enumerate(parts):
        a += ',' if i < len(parts) - 1 else ''
        if len(line) + len(a) > 90 and line.strip().endswith(','): lines.append(line.rstrip()); line = ' ' * (len(name) + 2)
        line += a + ' '
    lines.append(line.rstrip() + ')')
    return '\n'.join('>      ' + l for l in lines)

def _defs(tree) -> dict:
    "Top-level defs and classes of `tree`, and their methods as `Class.method`."
    res = {}
    for n in getattr(tree, 'body', []):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            res[n.name] = n
            if isinstance(n, ast.ClassDef):
                res.update({f'{n.name}.{m.name}': m for m in n.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))})
    return res

class static_show_docs:
    "Without execution: each `show_doc` cell with no stored output gets its entry from the exported source (signature, docstring, source link)."
    def __init__(self, nb): self.nb = nb
    def begin(self):
        from nbdev.processors import _default_exp
        self.defs, self.lines, self.url = {}, {}, None
        for c in self.nb.cells:
            if c.cell_type == 'code' and (c.directives_ or {}).keys() & {'export', 'exports'}:
                try: self.defs.update(_defs(ast.parse(c.source)))
                except SyntaxError: pass
        mod, cfg = _default_exp(self.nb), get_config()
        py = cfg.lib_path/(mod.replace('.', '/') + '.py') if mod else None
        if py and py.exists():
            self.lines = {k: v.lineno for k, v in _defs(ast.parse(py.read_text())).items()}
            if cfg.get('git_url'): self.url = f"{cfg.git_url}/blob/{cfg.get('branch', 'main')}/{py.relative_to(cfg.config_path).as_posix()}"
    def __call__(self, cell):
        from nbdev.processors import _is_showdoc
        if not _is_showdoc(cell) or cell.get('outputs'): return
        m = re.search(r'^show_doc\(\s*([\w.]+)\s*[,)]', cell.source, re.M)
        node = self.defs.get(m.group(1)) if m else None
        if node is None: return
        name, doc = m.group(1), ast.get_docstring(node)
        md = '---\n\n' + (f'[source]({self.url}#L{self.lines[name]})\n\n' if self.url and name in self.lines else '') + \
             f'### {name}\n\n{_sig(node, name)}' + (f'\n\n*{doc.strip()}*' if doc else '')
        cell.outputs = [dict(output_type='display_data', metadata={}, data={'text/markdown': md, 'text/plain': _sig(node, name)})]

def optional_modules(cfg) -> set[str]:
    "Top-level modules of the optional extras, settings.ini's `<extra>_requirements` (not dev): e.g. triton, jax, jaxlib."
    reqs = ' '.join(v for k, v in cfg.d.items() if k.endswith('_requirements') and k != 'dev_requirements').split()
    return {re.split(r'[\s<>=!~;\[]', r, maxsplit=1)[0].lower().replace('-', '_') for r in reqs}

def _missing_optional(e: BaseException, optional) -> BaseException | None:
    "The `ModuleNotFoundError` for a missing optional extra behind `e`, if that is what `e` comes from."
    while e is not None:
        if isinstance(e, ModuleNotFoundError) and (e.name or '').split('.')[0].lower() in optional: return e
        e = e.__cause__ or e.__context__
    return None

def proc_one(src: str, dst: str, optional=frozenset()) -> dict:
    "Process notebook `src` into `dst` (in a fresh worker process); a report dict, never raises."
    from execnb.nbio import read_nb, write_nb
    from nbdev.process import NBProcessor
    os.environ['IN_TEST'] = '1'  # as nbdev's serve_drv
    t0, note = time.perf_counter(), ''
    try:
        try:
            nb = read_nb(src); NBProcessor(nb=nb, procs=_procs(execute=True)).process()
        except Exception as e:
            ie = _missing_optional(e, optional)
            if ie is None: raise
            note = f'not executed ({type(ie).__name__}: {ie}): stored outputs, API entries from the source'
            nb = read_nb(src); NBProcessor(nb=nb, procs=_procs(execute=False)).process()
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        write_nb(nb, dst)
        return dict(src=src, ok=True, note=note, secs=time.perf_counter() - t0)
    except BaseException:
        return dict(src=src, ok=False, note=traceback.format_exc(), secs=time.perf_counter() - t0)

def process_all(cfg, nbs: list[Path], proc: Path):
    "Process `nbs` into `proc` in parallel (spawned workers, as nbdev); exit with every failure's traceback."
    shutil.rmtree(proc, ignore_errors=True)
    jobs = [(str(p), str(proc/p.relative_to(cfg.nbs_path))) for p in sorted(nbs, key=lambda p: -p.stat().st_size)]
    workers, optional = max(1, min(len(jobs), os.cpu_count() or 1)), frozenset(optional_modules(cfg))
    # the workers' IPython shells replace `__main__`: hand them `proc_one` from an importable module, as nbdev's serve_drv
    if str(Path(__file__).resolve().parent) not in sys.path: sys.path.insert(0, str(Path(__file__).resolve().parent))
    import docs_offline
    # one fresh process per notebook, as a fresh kernel: nothing one notebook imports leaks into the next
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('spawn'), max_tasks_per_child=1) as ex:
        reports = list(ex.map(docs_offline.proc_one, *zip(*jobs), [optional] * len(jobs)))
    failed = [r for r in reports if not r['ok']]
    for r in sorted(reports, key=lambda r: r['src']):
        rel = Path(r['src']).relative_to(cfg.config_path)
        print(f"  {'ok  ' if r['ok'] else 'FAIL'} {rel} {r['secs']:6.1f}s" + (f"  {r['note']}" if r['ok'] and r['note'] else ''))
    for r in failed:
        print(f"\ndocs_offline: processing {Path(r['src']).relative_to(cfg.config_path)} failed:\n{r['note']}", file=sys.stderr)
    if failed: sys.exit(f"docs_offline: {len(failed)} notebook(s) failed, see above")

# ---------------------------------------------------------------------------------------------- sidebar
def sidebar_order(cfg) -> list[str]:
    "Notebook paths (relative to nbs/) in sidebar order: nbs/sidebar.yml, checked against what `nbdev_sidebar` makes."
    from nbdev.quarto import nbdev_sidebar, _def_file_re
    yml = cfg.nbs_path/'sidebar.yml'
    committed = yml.read_text() if yml.exists() else ''
    if not cfg.custom_sidebar:  # nbdev_docs regenerates it: show, don't write, what it would make
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf): nbdev_sidebar.__wrapped__(path=cfg.nbs_path, printit=True, file_re=_def_file_re)
        generated = buf.getvalue().rstrip('\n') + '\n'
        if generated != committed:
            print(f"docs_offline: warning: {yml.relative_to(cfg.config_path)} is not what nbdev_sidebar makes (nbdev_docs would "
                  f"rewrite it); run `nbdev_sidebar` and commit it. Using:\n{generated}", file=sys.stderr)
            committed = generated
    def flat(items):
        for it in items or []:
            if isinstance(it, str): yield it
            elif isinstance(it, dict):
                if isinstance(it.get('href'), str): yield it['href']
                yield from flat(it.get('contents'))
    return list(flat(((yaml.safe_load(committed) or {}).get('website') or {}).get('sidebar', {}).get('contents')))

# ---------------------------------------------------------------------------------------------- rendering
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
    import nbformat
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
                  "displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true, processEnvironments: true}};</script>")

def local_mathjax(out: Path) -> str | None:
    "Unpack MathJax (from the npm registry, once) next to the pages so formulas render offline; its URL, or None."
    js = out/'mathjax'/'es5'/'tex-chtml-full.js'
    if not js.exists() and shutil.which('npm'):
        import tarfile, tempfile
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run(['npm', 'pack', MATHJAX, '--silent'], cwd=d, capture_output=True, text=True)
            if r.returncode: print(f"docs_offline: `npm pack {MATHJAX}` failed:\n{r.stdout}{r.stderr}", file=sys.stderr)
            tgz = Path(d)/r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None
            if tgz and tgz.exists():
                with tarfile.open(tgz) as t:
                    for m in t.getmembers():
                        if m.name.startswith('package/es5/'):
                            m.name = 'mathjax/' + m.name[len('package/'):]; t.extract(m, out)
    return 'mathjax/es5/tex-chtml-full.js' if js.exists() else None

LAYOUT_CSS = """
body.jp-Notebook { margin: 0; padding: 0; }
#sidebar { position: fixed; top: 0; bottom: 0; left: 0; width: 17rem; box-sizing: border-box; overflow-y: auto; padding: 1.2rem 1rem;
  background: #f7f7f9; border-right: 1px solid #e0e0e0; font-family: var(--jp-ui-font-family); font-size: 14px; line-height: 1.4; }
#sidebar .site-title { display: block; font-size: 1.25em; font-weight: 600; color: #222; text-decoration: none; margin-bottom: .9rem; }
#sidebar ul { list-style: none; margin: 0; padding: 0; }
#sidebar li a { display: block; padding: .28rem .5rem; border-radius: 4px; color: #2a5db0; text-decoration: none; }
#sidebar li a:hover { background: #e8eef8; }
#sidebar li a.active { background: #2a5db0; color: #fff; font-weight: 600; }
body.jp-Notebook > main { margin-left: 17rem; padding: 1.5rem 2rem 3rem; max-width: 1150px; }
#title-block-header { margin: 0 0 1.5rem calc(var(--jp-cell-collapser-width, 8px) + var(--jp-cell-padding, 5px)); padding-bottom: .8rem;
  border-bottom: 1px solid #e0e0e0; font-family: var(--jp-content-font-family); }
#title-block-header h1.title { font-size: 2.1em; margin: 0 0 .5rem; }
#title-block-header .description { font-size: 1.15em; color: #555; margin: 0; }
@media (max-width: 900px) { #sidebar { position: static; width: auto; border-right: none; border-bottom: 1px solid #e0e0e0; }
  body.jp-Notebook > main { margin-left: 0; } }
"""

TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block extra_css %}<style type="text/css">{{ resources.offline.css }}</style>{% endblock extra_css %}
{%- block html_head_js_mathjax -%}
{%- if resources.offline.mathjax_url %}
{{ resources.offline.mathjax_config }}
<script id="MathJax-script" src="{{ resources.offline.mathjax_url }}"></script>
{%- endif %}
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
{{ resources.offline.nav }}
<main>
{{ resources.offline.header }}
{%- endblock body_header -%}
"""

def md_inline(s: str) -> str:
    "Markdown `s` (a title or description line) as inline HTML; TeX is left for MathJax."
    from nbconvert.filters.markdown import markdown2html_mistune
    h = markdown2html_mistune(s).strip()
    return re.sub(r'^<p>(.*)</p>$', r'\1', h, flags=re.S)

def plain(s: str) -> str:
    "A title as plain text for link labels."
    return html.unescape(re.sub(r'<[^>]+>', '', md_inline(s)))

def nav_html(site: str, pages: list[tuple[str, str]], current: str) -> str:
    items = ''.join(f'<li><a href="{html.escape(n)}.html"' + (' class="active" aria-current="page"' if n == current else '') +
                    f'>{html.escape(plain(t))}</a></li>' for n, t in pages)
    return (f'<nav id="sidebar" aria-label="Pages"><a class="site-title" href="index.html">{html.escape(site)}</a>'
            f'<ul>{items}</ul></nav>')

def header_html(fm: dict, title: str) -> str:
    desc = fm.get('description')
    return (f'<header id="title-block-header"><h1 class="title">{md_inline(title)}</h1>' +
            (f'<p class="description">{md_inline(str(desc))}</p>' if desc else '') + '</header>')

def main(readme=True):
    import jinja2
    from nbconvert import HTMLExporter, MarkdownExporter
    t0 = time.perf_counter()
    os.chdir(Path(__file__).resolve().parent.parent)  # nbdev's processors find settings.ini from the working directory
    cfg = get_config()
    proc, out = cfg.config_path/'_proc', cfg.config_path/cfg.doc_path
    nbs = list(nbglob(cfg.nbs_path, as_path=True))  # nbdev's own selection (skips _*, .*)
    order = sidebar_order(cfg)
    print(f"docs_offline: processing {len(nbs)} notebooks with nbdev's processors ...", flush=True)
    process_all(cfg, nbs, proc)
    t1 = time.perf_counter()
    out.mkdir(exist_ok=True)
    mathjax = local_mathjax(out)
    # every processed notebook, in sidebar order, then any the sidebar misses
    rank = {Path(s).with_suffix('').as_posix(): i for i, s in enumerate(order)}
    docs = []
    for p in sorted(proc.rglob('*.ipynb')):
        nb = load(p); fm = front_matter(nb)
        rel = p.relative_to(proc).with_suffix('').as_posix()
        name = Path(fm.get('output-file', p.stem + '.html')).stem
        docs.append((rank.get(rel, len(rank)), rel, p, nb, fm, name, str(fm.get('title', name))))
    docs.sort(key=lambda d: (d[0], d[1]))
    missing = [d[1] for d in docs if d[0] == len(rank)]
    if missing: print(f"docs_offline: warning: not in the sidebar, listed last: {', '.join(missing)}", file=sys.stderr)
    pages = [(d[5], d[6]) for d in docs]
    exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True,
                            extra_loaders=[jinja2.DictLoader({'offline.html.j2': TEMPLATE})], template_file='offline.html.j2')
    for stale in set(out.glob('*.html')) - {out/f'{d[5]}.html' for d in docs}: stale.unlink()  # pages of renamed notebooks
    for _, rel, p, nb, fm, name, title in docs:
        nb.metadata['title'] = plain(title)
        res = {'offline': dict(css=LAYOUT_CSS, mathjax_url=mathjax, mathjax_config=MATHJAX_CONFIG,
                               nav=nav_html(cfg.get('title', cfg.lib_name), pages, name), header=header_html(fm, title))}
        (out/f'{name}.html').write_text(exporter.from_notebook_node(nb, resources=res)[0])
        if readme and p.name == Path(cfg.readme_nb).name:
            md, res = MarkdownExporter().from_notebook_node(nb, resources={'output_files_dir': 'README_files'})
            files = cfg.config_path/'README_files'
            shutil.rmtree(files, ignore_errors=True)
            for fn, data in res.get('outputs', {}).items():
                (cfg.config_path/fn).parent.mkdir(parents=True, exist_ok=True); (cfg.config_path/fn).write_bytes(data)
            head = f"# {fm.get('title', cfg.lib_name)}\n\n" + (f"> {fm['description']}\n\n" if fm.get('description') else '')
            (cfg.config_path/'README.md').write_text(head + md.lstrip())
    print(f"wrote {len(pages)} pages to {out}: {', '.join(n for n, _ in pages)}" +
          ('' if mathjax else ' (no local MathJax: formulas stay as TeX)') +
          f"\ndocs_offline: {time.perf_counter() - t0:.0f}s ({t1 - t0:.0f}s processing notebooks)")

if __name__ == '__main__': main(readme='--no-readme' not in sys.argv)
