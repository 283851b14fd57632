"The documentation site: built from the notebooks by tools/build_docs.py, opened in headless Chromium."
import html
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

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


def render(browser, page, tmp_path, name):
    "Screenshot and rendered text of a page, as Chromium shows it."
    prof = tmp_path / f'profile-{name}'
    shot = tmp_path / f'{name}.png'
    r = subprocess.run([browser, *FLAGS, f'--user-data-dir={prof}', f'--screenshot={shot}', page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 20_000, r.stderr[-2000:]
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    dom = subprocess.run([browser, *FLAGS, f'--user-data-dir={prof}', '--dump-dom', page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    body = re.sub(r'(?s)<(script|style)\b.*?</\1>', ' ', dom)
    return html.unescape(re.sub(r'\s+', ' ', re.sub(r'<[^>]+>', ' ', body)))


def test_site_has_every_page(site):
    nbs = sorted(p.stem for p in (ROOT / 'nbs').glob('*.ipynb') if not p.name.startswith('_'))
    for n in nbs: assert (site / f'{n}.html').exists(), n
    mods = sorted(p.stem for p in (ROOT / 'mesm_prem').glob('*.py') if not p.name.startswith('_'))
    for m in mods: assert (site / 'api' / f'{m}.html').exists(), m
    for g in ('data_formats', 'metrics', 'real_datasets', 'mesm_datasets'): assert (site / f'{g}.html').exists(), g


def test_home_and_api_pages_render(site, browser, tmp_path):
    home = render(browser, site / 'index.html', tmp_path, 'home')
    for heading in ('mesm_prem', 'Quick start', 'What works today'): assert heading in home, heading
    assert 'mesm-prem demo' in home and 'Running on the real datasets' in home
    api = render(browser, site / 'api' / 'run_mesm.html', tmp_path, 'api')
    assert 'mesm_prem.run_mesm' in api and 'MESMPredictor' in api
    assert "read_split(exp: 'MESMExperiment', split: 'str') -> 'Annotations'" in api      # a signature, as rendered
    assert 'The annotations of split in the dataset' in api                                  # and its docstring
    nb = render(browser, site / '09_mesm_run.html', tmp_path, 'notebook')
    squeezed = re.sub(r'\s+', '', nb)                                                         # code is tokenised by the highlighter
    assert "classMESMPredictor(run_dir,device:'str|None'=None" in squeezed                     # show_doc blocks in the notebook pages
    assert 'Ranked(start,end,score)windowsinseconds' in squeezed
