"""Load every page of the offline docs in headless Chromium and check what a reader would see.

For each `_docs/*.html`: the rendered DOM (after scripts ran) shows the page title and at least one code cell, and
no error output (a Python traceback). A screenshot of each page lands in `_docs/screenshots/` for humans.
Usage: python tools/check_docs.py [_docs]
"""
import html, re, shutil, subprocess, sys, tempfile
from pathlib import Path

FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--hide-scrollbars']

def chromium() -> str:
    for c in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(c): return shutil.which(c)
    sys.exit("check_docs: no Chromium found (Debian: apt-get install chromium)")

def render(browser, page: Path, profile: str) -> str:
    r = subprocess.run([browser, *FLAGS, f'--user-data-dir={profile}', '--virtual-time-budget=10000', '--dump-dom', page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    return r.stdout

def check(dom: str, title: str, math: bool = False) -> list[str]:
    text = html.unescape(re.sub(r'<[^>]+>', ' ', dom))
    problems = []
    if not re.search(rf'<title>\s*{re.escape(html.escape(title, quote=False))}', dom) and title not in text: problems.append(f'title {title!r} not shown')
    if 'jp-CodeCell' not in dom and 'highlight' not in dom: problems.append('no code cell rendered')
    if 'Traceback (most recent call last)' in text: problems.append('a Python traceback is shown')
    if math and 'mjx-container' not in dom: problems.append('formulas not typeset (MathJax did not run)')
    return problems

def main(doc_dir='_docs'):
    browser, pages, failed = chromium(), sorted(Path(doc_dir).glob('*.html')), 0
    if not pages: sys.exit(f'check_docs: no pages in {doc_dir}')
    shots = Path(doc_dir)/'screenshots'; shots.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        for p in pages:
            src = p.read_text()
            m = re.search(r'<title>(.*?)</title>', src, re.S)
            title = html.unescape(m.group(1).strip()) if m else p.stem
            dom = render(browser, p, profile)
            problems = ['page did not render'] if len(dom) < 200 else check(dom, title, math='mathjax/es5' in src and '$' in src)
            subprocess.run([browser, *FLAGS, f'--user-data-dir={profile}', '--window-size=1200,1600', f'--screenshot={shots/(p.stem + ".png")}',
                            p.resolve().as_uri()], capture_output=True, timeout=120)
            print(f"{'ok  ' if not problems else 'FAIL'} {p.name}: title {title!r}, {len(dom):,} bytes of DOM" + (f" -- {'; '.join(problems)}" if problems else ''))
            failed += bool(problems)
    print(f"{len(pages) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main(*sys.argv[1:])
