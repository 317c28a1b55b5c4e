"""The documentation site: built from `nbs/` with the stored outputs, every link checked, pages opened in headless
Chromium with the network off, and the stored outputs of every notebook checked (no stderr, no machine paths).

The browser tests drive the system's Chromium through playwright (a dev extra): `.ci/run` installs Debian's
`chromium`; without a chromium binary or without playwright they are skipped, and say why. The stored-output checks
run one test per notebook, so they can be run alone and name each offender: `pytest tests/test_docs.py -k stored_outputs`
(one notebook: `-k "stored_outputs and 05_prefs"`).
"""
import functools, html, http.server, re, shutil, threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from fastcore.nbio import read_nb

from latent_lm.docs import build_docs, find_notebooks, output_problems, page_groups

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
BUILT = {}


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The real site, built from `nbs/` with the outputs stored in the notebooks (nothing is executed)"
    dest = tmp_path_factory.mktemp('site')/'_docs'
    BUILT['stems'] = [fn.stem for fn in find_notebooks(NBS)]        # the notebooks there when it was built
    build_docs(NBS, dest, quiet=True)
    return dest


def _pages(dest): return sorted(p for p in dest.rglob('*.html') if '_static' not in p.parts)


def test_every_notebook_has_a_page(site):
    stems = BUILT['stems']
    assert 'index' in stems and len(stems) > 10
    for stem in stems:
        page = site/f'{stem}.html'
        assert page.exists(), f'no page for {stem}.ipynb'
        text = page.read_text()
        assert re.search(r'<title>[^<]+ (?:&#8212;|—) latent_lm</title>', text) or stem == 'index', f'{stem}.html: no title'
        assert not re.search(r'<span class="c1">#\s*\|', text), f'{stem}.html shows nbdev directives in its code'
    for name in ['index.html', 'papers.html', 'api/index.html', 'search.html', 'searchindex.js', '_static/mathjax/tex-chtml.js']:
        assert (site/name).exists(), name


def test_every_link_and_image_resolves(site):
    pages = _pages(site)
    ids = {p: set(re.findall(r'\sid="([^"]+)"', p.read_text())) for p in pages}
    checked = 0
    for p in pages:
        for tag, url in re.findall(r'<(a|link|img|script)\s[^>]*?(?:href|src)="([^"]+)"', p.read_text()):
            url = html.unescape(url)
            if re.match(r'[a-z][a-z0-9+.-]*:', url):
                assert tag == 'a' or url.startswith('data:'), f'{p.name} loads {url} from the network'
                continue
            path, _, frag = url.partition('#')
            target = (p.parent/unquote(urlparse(path).path)).resolve() if path else p
            assert target.exists(), f'{p.relative_to(site)} links to missing {url}'
            if frag and target.suffix == '.html':
                assert frag in ids.get(target, set(re.findall(r'\sid="([^"]+)"', target.read_text()))), \
                    f'{p.relative_to(site)} links to {url}, which has no element with id {frag!r}'
            checked += 1
    assert checked > 1000


def test_api_reference(site):
    index = (site/'api'/'index.html').read_text()
    assert index.index('Shared layers') < index.index('BLT') < index.index('Coconut')         # grouped by layer, then method
    core = (site/'api'/'latent_lm.core.html').read_text()
    assert 'id="latent_lm.core.check"' in core and 'id="latent_lm.core.RecordStore"' in core
    assert 'href="../00_core.html#src-latent-lm-core-check"' in core                         # entry -> its notebook cell
    assert not re.search(r'id="latent_lm\.[\w.]*\._', core)                                   # no private names
    assert 'Docs: https' not in core
    model = (site/'api'/'latent_lm.blt.model.html').read_text()
    assert 'Define the computation performed at every call' not in model                     # nn.Module.forward's docstring
    assert (site/'00_core.html').read_text().count('href="api/latent_lm.core.html#latent_lm.core.') >= 5   # prose -> API


def test_paper_index_from_the_registry(site):
    from latent_lm.registry import methods
    papers = (site/'papers.html').read_text()
    for m in methods(planned=True).values():
        assert f'https://arxiv.org/abs/{m.arxiv}' in papers and html.escape(m.title) in papers, m.name
    for m in methods().values():
        for stem in m.notebooks:
            if (NBS/f'{stem}.ipynb').exists(): assert f'href="{stem}.html"' in papers, stem


def test_maths_is_offline(site):
    page = (site/'11_blt_entropy.html').read_text()
    assert '<script defer="defer" src="_static/mathjax/tex-chtml.js' in page or 'src="_static/mathjax/tex-chtml.js' in page
    assert 'class="math' in page and 'cdn.jsdelivr' not in page


# --- the stored outputs of every notebook ----------------------------------------------------------------------------

@pytest.mark.parametrize('nb', [fn.name for fn in find_notebooks(NBS)])
def test_stored_outputs(nb):
    "No stderr (warnings, loading bars) and no machine paths in what a page shows; fix: re-store the outputs, or print something else"
    probs = output_problems(read_nb(NBS/nb))
    assert not probs, f'{nb}: ' + '; '.join(f'cell {i}: {p}' for i, p in probs)


# --- headless Chromium ---------------------------------------------------------------------------------------------

def _chromium():
    return next((p for n in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable') if (p := shutil.which(n))), None)


def _playwright():
    try:
        import playwright.sync_api
        return True
    except ImportError: return False


needs_browser = pytest.mark.skipif(_chromium() is None or not _playwright(),
                                   reason='no chromium binary on PATH (`apt-get install -y chromium`) or no playwright (`pip install -e ".[dev]"`)')


@pytest.fixture(scope='module')
def server(site):
    "The site served over http on 127.0.0.1, on a free port"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown(); httpd.server_close()


@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=['--no-sandbox', '--disable-dev-shm-usage',
                                                                 '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'])
        yield b
        b.close()


def _open(browser, url):
    "Open `url` with every request that leaves 127.0.0.1 blocked; returns the page and what failed or was blocked"
    ctx = browser.new_context(viewport={'width': 1400, 'height': 900})
    bad = []
    ctx.route(re.compile(r'^(?!http://127\.0\.0\.1[:/]).*'), lambda route: (bad.append(('blocked', route.request.url)), route.abort()))
    page = ctx.new_page()
    page.on('requestfailed', lambda r: bad.append(('failed', r.url)))
    page.on('response', lambda r: r.status >= 400 and bad.append((r.status, r.url)))
    page.goto(url, wait_until='load')
    page.wait_for_function('() => !window.MathJax || !MathJax.startup || MathJax.startup.promise', timeout=20000)
    page.evaluate('() => window.MathJax && MathJax.startup && MathJax.startup.promise')
    return page, bad


def _check(browser, url):
    page, bad = _open(browser, url)
    try:
        title = page.title()
        imgs = page.evaluate('() => Array.from(document.images).map(i => [i.currentSrc.slice(-60), i.complete && i.naturalWidth > 0])')
        text = page.evaluate('() => document.querySelector("article") ? document.querySelector("article").innerText : document.body.innerText')
        links = page.evaluate('() => Array.from(document.querySelectorAll("a[href]")).map(a => a.href)')
        return dict(title=title, images=imgs, text=text, bad=bad, links=links,
                    maths=page.evaluate('() => document.querySelectorAll("mjx-container").length'),
                    figure_links=page.evaluate('() => document.querySelectorAll("a.figure-link img").length'),
                    widest_figure=page.evaluate('() => Math.max(0, ...Array.from(document.querySelectorAll("div.cell_output img")).map(i => i.clientWidth))'))
    finally: page.context.close()


def _method_pages():
    "One notebook page per method: the first of each method's section that exists"
    return [g[3][0] for g in page_groups([fn.stem for fn in find_notebooks(NBS)]) if g[0] not in ('layers', 'more')]


@needs_browser
def test_pages_in_chromium(site, server, browser):
    pages = ['index.html', 'papers.html', 'api/index.html', 'api/latent_lm.core.html', '11_blt_entropy.html',
             *[f'{s}.html' for s in _method_pages()]]
    assert len(pages) >= 8
    seen_images = 0
    for name in dict.fromkeys(pages):
        r = _check(browser, f'{server}/{name}')
        assert r['title'].endswith('latent_lm'), (name, r['title'])
        assert r['bad'] == [], f'{name}: requests that failed or left the machine: {r["bad"][:5]}'
        assert all(ok for _, ok in r['images']), f'{name}: images that did not load: {[s for s, ok in r["images"] if not ok]}'
        assert '$$' not in r['text'] and not re.search(r'\\(frac|sum|mathrm|theta)\b', r['text']), f'{name}: raw LaTeX left on the page'
        local = [u for u in r['links'] if u.startswith(server)]
        for u in local:
            target = site/unquote(urlparse(u).path).lstrip('/')
            assert target.exists() or (target/'index.html').exists(), f'{name} links to missing {u}'
        seen_images += len(r['images'])
    assert seen_images >= 3
    r = _check(browser, f'{server}/11_blt_entropy.html')
    assert r['maths'] > 3                                                                   # MathJax typeset the equations
    assert r['figure_links'] >= 1 and r['widest_figure'] >= 600                             # figures wide, and open at full size


@needs_browser
def test_search_box_in_chromium(server, browser):
    page, bad = _open(browser, f'{server}/index.html')
    try:
        page.keyboard.press('Control+k')                                                    # pydata's search dialog
        box = page.locator('input[name="q"]:visible').first
        box.fill('entropy patching')
        box.press('Enter')
        page.wait_for_url(re.compile(r'search\.html\?q='))
        page.wait_for_selector('#search-results li a', timeout=30000)
        hits = page.eval_on_selector_all('#search-results li a', 'els => els.map(e => e.getAttribute("href"))')
        assert any('blt' in h for h in hits), hits
        assert bad == [], bad
    finally: page.context.close()


# --- the command and --execute ---------------------------------------------------------------------------------------

def _tiny_project(root):
    "A project with one notebook whose stored output ('stored') differs from what running it prints ('ran')"
    from fastcore.nbio import mk_cell, new_nb, write_nb
    (root/'nbs').mkdir(parents=True)
    (root/'pyproject.toml').write_text('[project]\nname = "tinyproj"\ndescription = "A tiny project."\n')
    out = dict(output_type='stream', name='stdout', text='stored\n')
    write_nb(new_nb([mk_cell('# Tiny\n\n> One page.', 'markdown'), mk_cell('print("ran")', outputs=[out]),
                     mk_cell('#| slow\nraise RuntimeError("slow cells are not run")')]), root/'nbs'/'00_tiny.ipynb')
    return root/'nbs'


def _stream_outputs(page):
    "The printed outputs a page shows"
    return [html.unescape(re.sub(r'<[^>]+>', '', t)).strip() for t in
            re.findall(r'class="output stream[^"]*"><div class="highlight"><pre>(.*?)</pre>', page.read_text(), flags=re.S)]


def test_stored_outputs_by_default_and_execute_reruns(tmp_path):
    from latent_lm.cli import main
    nbs = _tiny_project(tmp_path)
    assert main(['docs', '--nbs', str(nbs), '--dest', str(tmp_path/'a')]) in (0, None)
    assert _stream_outputs(tmp_path/'a'/'00_tiny.html') == ['stored']
    assert main(['docs', '--nbs', str(nbs), '--dest', str(tmp_path/'b'), '--execute', 'true']) in (0, None)
    assert _stream_outputs(tmp_path/'b'/'00_tiny.html') == ['ran']                           # run again; the slow cell was not
    assert read_nb(nbs/'00_tiny.ipynb').cells[1].outputs[0]['text'] == 'stored\n'          # --execute leaves the notebook alone


def test_docs_command_errors(tmp_path, capsys):
    from latent_lm.cli import main
    assert main(['docs', '--nbs', str(tmp_path/'nope'), '--dest', str(tmp_path/'out')]) == 1
    assert 'No notebook folder' in capsys.readouterr().err and not (tmp_path/'out').exists()
    assert main(['docs', '--n_workers', '0']) == 2 and 'n_workers must be at least 1' in capsys.readouterr().err
