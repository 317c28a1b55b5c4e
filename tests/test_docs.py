"""The documentation site: built from `nbs/` with stored outputs, links checked, pages opened in headless Chromium.

CI installs the browser with `apt-get install -y --no-install-recommends chromium`; without a chromium binary the
browser tests are skipped (and say so), the build tests still run.
"""
import base64, functools, html, http.server, io, json, re, shutil, subprocess, tempfile, threading
from pathlib import Path

import pytest
from fastcore.nbio import mk_cell, new_nb, write_nb

from latent_lm.docs import PAPERS, build_docs, find_notebooks

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The real site, built from `nbs/` with the outputs stored in the notebooks (fast: nothing is executed)"
    dest = tmp_path_factory.mktemp('site')
    expected = [fn.stem for fn in find_notebooks(NBS)]
    written = build_docs(NBS, dest, execute=False, quiet=True)
    return dest, expected, written


@pytest.fixture(scope='module')
def fig_site(tmp_path_factory):
    "A one-notebook site whose page has a matplotlib figure in its outputs and a local image in its markdown"
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    root = tmp_path_factory.mktemp('figproj')
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    plt.close(fig)
    (root/'nbs').mkdir()
    (root/'nbs'/'local.png').write_bytes(buf.getvalue())
    out = dict(output_type='display_data', metadata={}, data={'image/png': base64.b64encode(buf.getvalue()).decode(), 'text/plain': '<Figure>'})
    write_nb(new_nb([mk_cell('# Figures\n\n> A page with pictures.\n\n![a local picture](local.png)', 'markdown'),
                     mk_cell('#| hide\nsecret = 1'),
                     mk_cell('plt.plot([0, 1], [1, 0]);', outputs=[out])]), root/'nbs'/'00_figs.ipynb')
    dest = root/'_docs'
    build_docs(root/'nbs', dest, execute=False, quiet=True, lib='no_such_package_here')
    return dest


def test_every_notebook_has_a_page(site):
    dest, expected, written = site
    assert expected, 'no notebooks found in nbs/'
    for stem in expected:
        page = dest/f'{stem}.html'
        assert page.exists(), f'no page for {stem}.ipynb'
        text = page.read_text()
        assert re.search(r'<title>[^<]+ – latent_lm</title>', text)
        assert not re.search(r'<pre><span></span><span class="c1">#\s*\|', text), f'{stem}.html shows nbdev directives in code'
    for name in ['index.html', 'api.html', 'papers.html', 'site.css']: assert (dest/name).exists()
    assert {p.name for p in written} >= {f'{s}.html' for s in expected}


def test_every_page_is_in_the_sidebar_and_every_link_resolves(site):
    dest, expected, _ = site
    pages = sorted(dest.glob('*.html'))
    ids = {p.name: set(re.findall(r'\sid="([^"]+)"', p.read_text())) for p in pages}
    for p in pages:
        text = p.read_text()
        sidebar = text.split('<aside class="sidebar">', 1)[1].split('</aside>', 1)[0]
        for stem in expected: assert f'href="{stem}.html"' in sidebar or stem == 'index', f'{p.name}: {stem} missing from the sidebar'
        for href in re.findall(r'<(?:a|link)\s[^>]*href="([^"]+)"', text):
            href = html.unescape(href)
            if re.match(r'[a-z]+:', href) or href.startswith('#'): continue
            target, _, frag = href.partition('#')
            assert (dest/target).exists(), f'{p.name} links to missing {target}'
            if frag: assert frag in ids[target], f'{p.name} links to {href}, which has no element with id {frag!r}'


def test_api_and_papers_pages(site):
    dest, _, _ = site
    api = (dest/'api.html').read_text()
    assert 'id="latent_lm.docs.build_docs"' in api and 'href="98_docs.html#build_docs"' in api
    papers = (dest/'papers.html').read_text()
    for p in PAPERS: assert f'https://arxiv.org/abs/{p["arxiv"]}' in papers
    assert len(re.findall(r'<span class="status status-(?:implemented|partial|planned)">', papers)) == len(PAPERS)


def test_figure_site_offline(fig_site):
    text = (fig_site/'00_figs.html').read_text()
    assert 'secret' not in text and '<title>Figures – ' in text
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', text)) == 2


# --- headless Chromium -------------------------------------------------------------------------------------------

def _chromium():
    return next((p for n in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable') if (p := shutil.which(n))), None)


needs_chromium = pytest.mark.skipif(_chromium() is None, reason='no chromium binary on PATH: `apt-get install -y chromium` to run the browser checks')

# Appended to a copy of a page: once everything has loaded, write what the browser saw into the DOM.
_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bar = document.querySelector('.topbar');
  var r = {title: document.title, images: imgs.length,
           broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.src.slice(0, 100); }),
           css: bar ? getComputedStyle(bar).position : null};
  var pre = document.createElement('pre'); pre.id = 'page-check'; pre.textContent = JSON.stringify(r); document.body.appendChild(pre);
});
</script>"""


def _check_page(site_dir, name, base_url):
    "Open a copy of page `name` in headless Chromium at `base_url` and return what the injected script saw"
    page = site_dir/name
    copy = site_dir/f'_check_{name}'
    copy.write_text(page.read_text().replace('</body>', _CHECK + '\n</body>'))
    try:
        with tempfile.TemporaryDirectory() as profile:
            r = subprocess.run([_chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
                                '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
                                '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',  # nothing but the local server
                                f'--user-data-dir={profile}', '--virtual-time-budget=5000', '--dump-dom', f'{base_url}/{copy.name}'],
                               capture_output=True, text=True, timeout=90)
    finally: copy.unlink()
    m = re.search(r'<pre id="page-check">(.*?)</pre>', r.stdout, flags=re.S)
    assert m, f'chromium did not run the page check on {name} (exit {r.returncode}):\n{r.stderr[-2000:]}'
    return json.loads(html.unescape(m.group(1)))


@pytest.fixture(scope='module')
def server(site):
    "The real site served over http on 127.0.0.1, on a free port"
    dest = site[0]
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(dest)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()


@needs_chromium
def test_pages_in_chromium(site, server, fig_site):
    dest, expected, _ = site
    home = _check_page(dest, 'index.html', server)
    assert home['title'].endswith('– latent_lm') and home['css'] == 'sticky' and home['broken'] == []
    # the notebook page with the most figures, over http and from file://
    stem = max((s for s in expected if s != 'index'), key=lambda s: (dest/f'{s}.html').read_text().count('<img'))
    for base in (server, dest.as_uri()):
        res = _check_page(dest, f'{stem}.html', base)
        assert res['title'].endswith('– latent_lm') and res['css'] == 'sticky', res
        assert res['broken'] == [], f'images that did not load on {stem}.html: {res["broken"]}'
    # a page that certainly has figures: one from an output, one from a local file named in markdown
    figs = _check_page(fig_site, '00_figs.html', fig_site.as_uri())
    assert figs['title'].startswith('Figures – ') and figs['images'] == 2 and figs['broken'] == [], figs
