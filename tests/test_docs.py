"The documentation site: built from the notebooks by tools/build_docs.py, opened in headless Chromium."
import html
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / 'tools'))
import build_docs  # noqa: E402

BROWSERS = ('chromium', 'chromium-browser', 'google-chrome')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--window-size=1280,1600', '--virtual-time-budget=5000']


@pytest.fixture(scope='module')
def site():
    r = subprocess.run([sys.executable, 'tools/build_docs.py'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return ROOT / '_docs'


@pytest.fixture(scope='module')
def browser():
    exe = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if exe is None:
        if os.environ.get('MESM_PREM_REQUIRE_BROWSER'): pytest.fail('no Chromium on this machine (apt-get install chromium)')
        pytest.skip('no Chromium here (CI installs it and sets MESM_PREM_REQUIRE_BROWSER=1)')
    return exe


def dump_dom(browser, page, tmp_path, name):
    "The DOM of a page once its scripts ran (within the virtual time budget), as Chromium serialises it."
    r = subprocess.run([browser, *FLAGS, f'--user-data-dir={tmp_path / f"profile-{name}"}', '--dump-dom', page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '</html>' in r.stdout, r.stderr[-2000:]
    return r.stdout


def visible_text(dom, drop=('script', 'style')):
    "The text of a DOM, without the elements named in drop."
    body = re.sub(r'(?s)<(%s)\b.*?</\1>' % '|'.join(drop), ' ', dom)
    return html.unescape(re.sub(r'\s+', ' ', re.sub(r'<[^>]+>', ' ', body)))


def render(browser, page, tmp_path, name):
    "Screenshot and rendered text of a page, as Chromium shows it."
    prof = tmp_path / f'profile-{name}'
    shot = tmp_path / f'{name}.png'
    r = subprocess.run([browser, *FLAGS, f'--user-data-dir={prof}', f'--screenshot={shot}', page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 20_000, r.stderr[-2000:]
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    return visible_text(dump_dom(browser, page, tmp_path, name))


def notebook_of(module):
    "The notebook of nbs/ whose `#| default_exp` is module (the notebooks' file names change; the module names less so)."
    found = [p for p in sorted((ROOT / 'nbs').glob('*.ipynb'))
             if build_docs.default_exp(json.loads(p.read_text(encoding='utf-8'))) == module]
    assert len(found) == 1, (module, found)
    return found[0]


def markdown_of(nb_path):
    "The markdown cells of a notebook, joined."
    return '\n'.join(build_docs._src(c) for c in json.loads(nb_path.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'markdown')


def test_site_has_every_page(site):
    nbs = sorted(p.stem for p in (ROOT / 'nbs').glob('*.ipynb') if not p.name.startswith('_'))
    for n in nbs: assert (site / f'{n}.html').exists(), n
    mods = sorted(p.stem for p in (ROOT / 'mesm_prem').glob('*.py') if not p.name.startswith('_'))
    for m in mods: assert (site / 'api' / f'{m}.html').exists(), m
    for g in ('data_formats', 'metrics', 'real_datasets', 'mesm_datasets', 'official_mesm', 'prem_reconstruction',
              'reproduce'):
        assert (site / f'{g}.html').exists(), g


def test_home_and_api_pages_render(site, browser, tmp_path):
    home = render(browser, site / 'index.html', tmp_path, 'home')
    for heading in ('mesm_prem', 'Quick start', 'What works today'): assert heading in home, heading
    assert 'mesm-prem demo' in home and 'Running on the real datasets' in home
    api = render(browser, site / 'api' / 'run_mesm.html', tmp_path, 'api')
    assert 'mesm_prem.run_mesm' in api and 'MESMPredictor' in api
    assert "read_split(exp: 'MESMExperiment', split: 'str') -> 'Annotations'" in api      # a signature, as rendered
    assert 'The annotations of split in the dataset' in api                                  # and its docstring
    nb = render(browser, site / '14_mesm_run.html', tmp_path, 'notebook')
    squeezed = re.sub(r'\s+', '', nb)                                                         # code is tokenised by the highlighter
    assert "classMESMPredictor(run_dir,device:'str|None'=None" in squeezed                     # show_doc blocks in the notebook pages
    assert 'Ranked(start,end,score)windowsinseconds' in squeezed


# ---- math: KaTeX, vendored in tools/katex/ and copied into the site; nothing is loaded from a CDN ----------------------------

FORMULA = r'\mathcal{L}_{fw}'          # in the markdown of the MESM notebook (default_exp mesm): the masked-word loss
CDN = re.compile(r'cdnjs\.cloudflare\.com|cdn\.jsdelivr\.net|unpkg\.com|fonts\.googleapis\.com|fonts\.gstatic\.com|mathjax|polyfill\.io'
                 r'|code\.jquery\.com|require\.js|requirejs|ajax\.googleapis\.com', re.I)
REMOTE = re.compile(r"""<(?:script|link|img|iframe|source|embed)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//"""
                    r"""|\bimport\s*\(?\s*["'](?:https?:)?//|@import\s+(?:url\()?["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//""", re.I)


def test_katex_is_vendored():
    k = build_docs.KATEX
    js = (k / 'katex.min.js').read_text(encoding='utf-8')
    assert f'"{build_docs.KATEX_VERSION}"' in js, 'KATEX_VERSION is not the version of tools/katex/katex.min.js'
    assert f'KaTeX {build_docs.KATEX_VERSION} ' in build_docs.__doc__, 'the docstring names another KaTeX version'
    assert (k / 'contrib' / 'auto-render.min.js').stat().st_size > 1000 and 'MIT' in (k / 'LICENSE').read_text()
    css = (k / 'katex.min.css').read_text(encoding='utf-8')
    fonts = re.findall(r'url\(([^)]+)\)', css)
    assert fonts and all(f.startswith('fonts/') and f.endswith('.woff2') and (k / f).exists() for f in fonts), fonts
    files = [f for f in k.rglob('*') if f.is_file()]
    assert {f.suffix for f in files} <= {'.js', '.css', '.woff2', ''} and sum(f.stat().st_size for f in files) < 1_000_000


def test_markdown_pages_keep_tex():
    "The .md pages' TeX is kept from markdown (no <em> from its _ and *), wrapped for KaTeX's auto-render; code is left alone."
    import markdown
    exts = [e if isinstance(e, str) else next(iter(e)) for e in build_docs.MARKDOWN_EXTENSIONS]
    cfgs = {k: v for e in build_docs.MARKDOWN_EXTENSIONS if isinstance(e, dict) for k, v in e.items()}
    out = markdown.markdown('Loss $a_i * b_j*c$ and \\(x_1^*\\).\n\n$$\n\\sum_i x_i * y_i\n$$\n\n```sh\nls $R/a $R/b\n```\n',
                            extensions=exts, extension_configs=cfgs)
    assert '<em>' not in out, out
    assert r'<span class="arithmatex">\(a_i * b_j*c\)</span>' in out and r'<span class="arithmatex">\(x_1^*\)</span>' in out, out
    assert '<div class="arithmatex">\\[\n\\sum_i x_i * y_i\n\\]</div>' in out, out
    assert 'ls $R/a $R/b' in out and out.count('arithmatex') == 3, out


def test_math_is_rendered_by_katex(site, browser, tmp_path):
    nb = notebook_of('mesm')
    assert f'${FORMULA}$' in markdown_of(nb), f'pick another formula: {FORMULA} is no longer in {nb.name}'
    page = site / f'{nb.stem}.html'
    assert page.name.endswith('_mesm.html') and (site / f'{nb.stem}.ipynb').exists()       # the notebook's page, not an API page
    dom = dump_dom(browser, page, tmp_path, 'math')
    assert dom.count('class="katex"') >= 10 and 'class="katex-mathml"' in dom and 'class="katex-html"' in dom
    assert f'<annotation encoding="application/x-tex">{FORMULA}</annotation>' in dom      # that formula, whole: no <em> from its _
    assert 'katex-error' not in dom
    text = visible_text(dom, drop=('script', 'style', 'annotation', 'pre', 'code'))         # what a reader sees, less the code
    assert FORMULA not in text and f'${FORMULA}$' not in text
    assert '$' not in text, re.findall(r'.{0,30}\$.{0,30}', text)[:5]                         # no raw TeX left in the prose


def test_site_loads_nothing_from_a_cdn(site):
    assert (site / 'katex' / 'katex.min.js').exists() and (site / 'katex' / 'contrib' / 'auto-render.min.js').exists()
    pages = sorted(site.rglob('*.html'))
    assert len(pages) > 20
    for p in pages + [site / 'math.js', site / 'extra.css', site / 'katex' / 'katex.min.css']:
        s = p.read_text(encoding='utf-8')
        m = CDN.search(s) or REMOTE.search(s)
        assert m is None, (str(p.relative_to(site)), s[max(0, m.start() - 100):m.end() + 100])
    for p in pages:                              # every page loads the site's own KaTeX, by a relative path (404.html: mkdocs's absolute ones)
        if p.name == '404.html': continue
        s = p.read_text(encoding='utf-8')
        assert re.search(r'<script src="(?:\.\./)*katex/katex\.min\.js"', s) and re.search(r'href="(?:\.\./)*katex/katex\.min\.css"', s), p
