"""Load every page of the offline docs in headless Chromium and check what a reader would see.

For each `_docs/*.html`, in the DOM after its scripts ran:
- title: a visible page title (`h1.title`, the page's `<title>`) and its description (`.description`);
- navigation: a `<nav>` sidebar with a link to every page of the site (and no link to a page that is not there);
- maths: if the page has TeX (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]` outside code), MathJax typeset it (`mjx-container`)
  and none is left raw;
- no notebook prompts (`In [1]:`, `Out[0]:`), at least one code cell (or, on a prose page, a code block), and no Python traceback.
Exits 1 with, for each check, the pages that fail it. A screenshot of each page lands in `_docs/screenshots/` for humans
(`--no-screenshots` to skip).
Usage: python tools/check_docs.py [DOC_DIR (default: the repo's _docs)] [--no-screenshots]   (needs Chromium: apt-get install chromium)
"""
import re, shutil, subprocess, sys, tempfile
from html.parser import HTMLParser
from pathlib import Path

FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--hide-scrollbars']
CHECKS = {'rendered': 'did not render', 'title': 'no visible title', 'description': 'no description',
          'navigation': 'no sidebar linking every page', 'maths': 'maths not typeset', 'prompts': 'stray In/Out prompts',
          'code': 'no code cell', 'errors': 'a traceback shown'}
PROMPT = re.compile(r'\b(?:In|Out)\s?\[[\d\s]*\]:')
# TeX in text: $$...$$, \(...\), \[...\], \begin{...}, or inline $...$ (no space inside the dollars, as Pandoc/Quarto)
TEX = re.compile(r'\$\$.+?\$\$|\\\(.+?\\\)|\\\[.+?\\\]|\\begin\{|(?<![\\$\w])\$(?=\S)[^$\n]+?(?<=\S)(?<!\\)\$(?![\d$])', re.S)

def chromium() -> str:
    for c in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(c): return shutil.which(c)
    sys.exit("check_docs: no Chromium found (Debian: apt-get install chromium)")

def render(browser, page: Path, profile: str) -> str:
    r = subprocess.run([browser, *FLAGS, f'--user-data-dir={profile}', '--virtual-time-budget=15000', '--dump-dom', page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=180)
    return r.stdout

class Page(HTMLParser):
    "What a reader sees in a page: its title heading, description, sidebar links, typeset and raw maths, prose text."
    SKIP = {'script', 'style', 'pre', 'code', 'mjx-container', 'textarea'}  # not prose: no TeX expected in there
    def __init__(self, src: str):
        super().__init__(convert_charrefs=True)
        self.title = self.h1 = None; self.description = False
        self.nav_links, self.mjx, self.code_cells, self.text = [], 0, 0, []
        self._skip, self._in_title, self._in_h1, self._nav, self._buf, self._pre = 0, False, False, 0, [], 0
        self.feed(src); self.close()
        self.prose = ''.join(self.text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs); cls = (a.get('class') or '').split()
        if tag in self.SKIP: self._skip += 1
        if tag == 'mjx-container': self.mjx += 1
        if tag == 'title': self._in_title, self._buf = True, []
        if tag == 'h1' and 'title' in cls: self._in_h1, self._h1buf = True, []
        if 'description' in cls: self.description = True
        if tag == 'nav': self._nav += 1
        if tag == 'a' and self._nav and a.get('href'): self.nav_links.append(a['href'])
        if 'jp-CodeCell' in cls: self.code_cells += 1
        if tag == 'pre': self._pre += 1
        if tag == 'code' and self._pre: self.code_cells += 1  # a code block in prose (an explanations page)
    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip: self._skip -= 1
        if tag == 'title' and self._in_title: self._in_title, self.title = False, ' '.join(''.join(self._buf).split())
        if tag == 'h1' and self._in_h1: self._in_h1, self.h1 = False, ' '.join(''.join(self._h1buf).split())
        if tag == 'nav' and self._nav: self._nav -= 1
        if tag == 'pre' and self._pre: self._pre -= 1
    def handle_data(self, data):
        if self._in_title: self._buf.append(data)
        if self._in_h1: self._h1buf.append(data)
        if not self._skip: self.text.append(data)

def check(static: Page, dom: Page, site: set[str], page_dir: Path) -> dict[str, str]:
    "Problems by check name."
    problems = {}
    if not dom.title: problems['title'] = 'no <title>'
    elif dom.h1 is None: problems['title'] = f'no visible title heading (h1.title) for {dom.title!r}'
    elif not dom.h1 or (dom.title not in dom.h1 and dom.h1 not in dom.title and not dom.mjx):
        problems['title'] = f'heading {dom.h1!r} is not the page title {dom.title!r}'
    if not dom.description: problems['description'] = 'no description under the title'
    linked = {Path(h.split('#')[0]).name for h in dom.nav_links if h.split('#')[0] and '://' not in h}
    if not dom.nav_links: problems['navigation'] = 'no sidebar (<nav> with links)'
    else:
        miss, dead = sorted(site - linked), sorted(h for h in linked if not (page_dir/h).exists())
        if miss or dead:
            problems['navigation'] = '; '.join(([f"no link to {', '.join(miss)}"] if miss else []) + ([f"dead link to {', '.join(dead)}"] if dead else []))
    tex, raw = TEX.findall(static.prose), TEX.findall(dom.prose)
    if tex and not dom.mjx: problems['maths'] = f'{len(tex)} formulas, none typeset (MathJax missing or did not run), e.g. {tex[0][:60]!r}'
    elif raw: problems['maths'] = f'{len(raw)} of {len(tex)} formulas left as raw TeX, e.g. {raw[0][:60]!r}'
    if (m := PROMPT.findall(dom.prose)): problems['prompts'] = f'{len(m)} notebook prompts shown ({m[0]!r}), e.g. before API entries'
    if not dom.code_cells and 'highlight' not in ''.join(dom.text): problems['code'] = 'no code cell rendered'
    if 'Traceback (most recent call last)' in dom.prose + ''.join(dom.text): problems['errors'] = 'a Python traceback is shown'
    return problems

def main(doc_dir=None, screenshots=True):
    doc_dir = Path(doc_dir) if doc_dir else Path(__file__).resolve().parent.parent/'_docs'
    browser, pages = chromium(), sorted(doc_dir.glob('*.html'))
    if not pages: sys.exit(f'check_docs: no pages in {doc_dir}')
    site = {p.name for p in pages}
    shots = doc_dir/'screenshots'
    if screenshots: shots.mkdir(exist_ok=True)
    failures: dict[str, list[str]] = {c: [] for c in CHECKS}
    with tempfile.TemporaryDirectory() as profile:
        for p in pages:
            src, dom_src = p.read_text(), render(browser, p, profile)
            static, dom = Page(src), Page(dom_src)
            problems = {'rendered': f'page did not render ({len(dom_src)} bytes of DOM)'} if len(dom_src) < 200 else check(static, dom, site, doc_dir)
            if screenshots:
                subprocess.run([browser, *FLAGS, f'--user-data-dir={profile}', '--window-size=1280,1600', '--virtual-time-budget=15000',
                                f'--screenshot={shots/(p.stem + ".png")}', p.resolve().as_uri()], capture_output=True, timeout=180)
            maths = f', {dom.mjx} formulas typeset' if dom.mjx else ''
            print(f"{'ok  ' if not problems else 'FAIL'} {p.name}: title {dom.title!r}, {len(set(dom.nav_links))} sidebar links{maths}" +
                  ''.join(f'\n       {k}: {v}' for k, v in problems.items()), flush=True)
            for k in problems: failures[k].append(p.name)
    bad = {k: v for k, v in failures.items() if v}
    n_bad = len({n for v in bad.values() for n in v})
    print(f"{len(pages) - n_bad} of {len(pages)} pages passed" + (f", {n_bad} failed:" if bad else ''))
    for k, v in bad.items(): print(f"  {CHECKS[k]} ({len(v)}): {', '.join(v)}")
    sys.exit(1 if bad else 0)

if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    main(*args[:1], screenshots='--no-screenshots' not in sys.argv)
