r"""Build the documentation site from the notebooks, without Quarto (which cannot be installed here).

    python tools/build_docs.py            # -> _docs/ (open _docs/index.html; works over file://)
    python tools/build_docs.py --serve    # the same, then `mkdocs serve` on 127.0.0.1:8000

Pipeline (nothing is executed: pages show the notebooks' saved outputs, as nbdev's Quarto pages do):
1. every notebook of nbs/ is processed into _docs_build/: `#| hide` cells dropped, `#|` directive lines
   stripped, cells with `#| echo: false` keep only their output, `#| output: false` / `#| include: false`
   applied; after each cell that defines exported functions or classes, an API block (signature and
   docstring, as nbdev's show_doc) is inserted, read from the installed package;
2. one API page per module (api/<module>.md: every exported name with its signature and docstring) and the
   hand-written pages of docs/ are added;
3. _mkdocs.yml is generated (material theme without web fonts, mkdocs-jupyter for the notebooks, no
   directory URLs so the site works from disk) and `mkdocs build` writes _docs/.
The README is generated separately from nbs/index.ipynb (tools/make_readme.py).

Math is rendered in the browser by KaTeX, offline: the site loads nothing from the network (it works over
file:// with no connection). KaTeX 0.19.1 (MIT, see tools/katex/LICENSE) is vendored in tools/katex/,
taken from the npm package `katex`: dist/katex.min.js, dist/katex.min.css (its @font-face rules cut to the
woff2 fonts, the only ones kept), dist/fonts/*.woff2 and dist/contrib/auto-render.min.js; it is copied to
_docs/katex/. The notebooks' markdown keeps its `$...$`, `$$...$$`, `\(...\)`, `\[...\]` and
`\begin{env}...\end{env}` untouched by markdown (nbconvert's math-aware mistune renderer), the .md pages wrap
theirs in `arithmatex` elements (pymdownx.arithmatex, generic mode), and math.js (MATH_JS below) runs KaTeX's
auto-render on those. A hook (on_page_content below) removes the MathJax and mermaid loaders that nbconvert
puts in every notebook page (they point at cdnjs). To update KaTeX (needs npm, not needed to build the site):

    python tools/build_docs.py --vendor-katex 0.19.1    # `npm pack katex@<version>`, refills tools/katex/

then set KATEX_VERSION below and the version above to the new one (tests/test_docs.py checks both against
katex.min.js) and rebuild.
"""
import argparse
import ast
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS, BUILD, SITE, DOCS = ROOT / 'nbs', ROOT / '_docs_build', ROOT / '_docs', ROOT / 'docs'
KATEX, KATEX_VERSION = ROOT / 'tools' / 'katex', '0.19.1'      # vendored; see the module docstring
KATEX_FILES = ['katex.min.js', 'katex.min.css', 'contrib/auto-render.min.js']  # from the npm package's dist/, with fonts/*.woff2
# runs KaTeX's auto-render on the notebooks' rendered markdown (and their table of contents) and on the .md pages' arithmatex
MATH_JS = r"""// KaTeX auto-render, offline (tools/build_docs.py)
(function () {
  var envs = ['equation', 'equation*', 'align', 'align*', 'alignat', 'alignat*', 'gather', 'gather*', 'multline', 'multline*', 'CD'];
  var delimiters = [{left: '$$', right: '$$', display: true}, {left: '\\[', right: '\\]', display: true},
                    {left: '$', right: '$', display: false}, {left: '\\(', right: '\\)', display: false}]
    .concat(envs.map(function (e) { return {left: '\\begin{' + e + '}', right: '\\end{' + e + '}', display: true}; }));
  var options = {delimiters: delimiters, throwOnError: false};
  function render() {
    var notebook = document.querySelector('.jupyter-wrapper') !== null;
    var sel = '.arithmatex' + (notebook ? ', .jupyter-wrapper .jp-RenderedMarkdown, .jupyter-wrapper .jp-RenderedLatex, .md-nav--secondary .md-nav__link' : '');
    document.querySelectorAll(sel).forEach(function (el) { renderMathInElement(el, options); });
  }
  if (typeof document$ !== 'undefined') document$.subscribe(render);
  else if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', render);
  else render();
})();
"""
# the .md pages' markdown; arithmatex keeps their TeX away from markdown, in <span|div class="arithmatex">\(..\) / \[..\]
MARKDOWN_EXTENSIONS = ['tables', 'fenced_code', 'toc', 'admonition', {'pymdownx.arithmatex': dict(generic=True)}]
# what nbconvert's lab template puts in every notebook page to load MathJax and mermaid from cdnjs
CDN_LOADERS = [re.compile(r'<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->', re.S),
               re.compile(r'<script type="module">(?:(?!</script>).)*?cdnjs\.cloudflare\.com/ajax/libs/mermaid(?:(?!</script>).)*</script>', re.S)]
PKG = 'mesm_prem'
# hand-written pages, in the order of the navigation
PAGES = [('Data formats', 'data_formats.md'), ('Metric conventions', 'metrics.md'), ('Running on the real datasets', 'real_datasets.md'),
         ('MESM datasets, step by step', 'mesm_datasets.md'),
         ('Your own videos', 'own_videos.md'),
         ('The official MESM code, and where we depart from it', 'official_mesm.md'),
         ('PREM: stated by the paper [P], reconstructed [R]', 'prem_reconstruction.md'),
         ("Reproducing the papers' tables", 'reproduce.md'),
         ('Performance', 'performance.md'), ('Reliability: bad inputs, faults, processors', 'reliability.md')]


def _src(cell) -> str:
    s = cell['source']
    return ''.join(s) if isinstance(s, list) else s


def directives(src: str) -> dict:
    "The `#| key: value` / `#| flag` lines at the top of a cell."
    out = {}
    for line in src.splitlines():
        if not line.startswith('#|'): break
        body = line[2:].strip()
        if ':' in body: k, v = body.split(':', 1); out[k.strip()] = v.strip()
        elif body: out[body.split()[0]] = ' '.join(body.split()[1:]) or True
    return out


def strip_directives(src: str) -> str:
    return '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip('\n')


def default_exp(nb: dict):
    for c in nb['cells']:
        d = directives(_src(c)) if c['cell_type'] == 'code' else {}
        if 'default_exp' in d: return d['default_exp']
    return None


def _signature(obj, name: str) -> str:
    try: sig = str(inspect.signature(obj))
    except (TypeError, ValueError): sig = '(...)'
    return f"{'class ' if inspect.isclass(obj) else ''}{name}{sig}"


def api_block(obj, name: str, level: int = 4) -> str:
    "Markdown: a heading, the signature as code and the docstring (first the object's, for a class also its methods')."
    doc = inspect.getdoc(obj) or ''
    parts = [f"{'#' * level} {name}", '', '```python', _signature(obj, name), '```', '', doc]
    if inspect.isclass(obj):
        for m, f in vars(obj).items():
            if m.startswith('_') or not (inspect.isfunction(f) or isinstance(f, (classmethod, staticmethod, property))): continue
            fn = f.fget if isinstance(f, property) else getattr(f, '__func__', f)
            mdoc = inspect.getdoc(fn) or ''
            sig = '' if isinstance(f, property) else _signature(fn, '')
            parts += ['', f"- **`{m}{sig}`**" + (f": {mdoc.splitlines()[0]}" if mdoc else '')]
    return '\n'.join(parts).rstrip() + '\n'


def exported_names(src: str) -> list:
    "Top-level functions and classes defined by an exported cell's source."
    try: tree = ast.parse(strip_directives(src))
    except SyntaxError: return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and not n.name.startswith('_')]


def md_cell(text: str) -> dict:
    return dict(cell_type='markdown', metadata={}, source=text)


def process_notebook(path: Path) -> dict:
    nb = json.loads(path.read_text(encoding='utf-8'))
    mod_name = default_exp(nb)
    mod = importlib.import_module(f'{PKG}.{mod_name}') if mod_name else None
    public = set(getattr(mod, '__all__', [])) if mod else set()
    cells = []
    for c in nb['cells']:
        src = _src(c)
        if c['cell_type'] != 'code':
            cells.append(c); continue
        d = directives(src)
        if 'hide' in d or 'default_exp' in d or d.get('include') == 'false' or 'nbdev_export()' in src: continue
        c = dict(c, source=strip_directives(src), metadata=dict(c.get('metadata', {})))
        if d.get('echo') == 'false': c['metadata']['tags'] = c['metadata'].get('tags', []) + ['remove_input']
        if d.get('output') == 'false': c['outputs'] = []
        for o in c.get('outputs', []):          # no pandoc attributes in text outputs
            if 'text' in o: o['text'] = re.sub(r'\{target="_blank"[^}]*\}', '', _src(dict(source=o['text'])))
        if not c['source'].strip() and not c.get('outputs'): continue
        cells.append(c)
        if 'export' in d or 'exports' in d:
            for name in exported_names(src):
                if mod is not None and name in public: cells.append(md_cell(api_block(getattr(mod, name), name)))
    nb = dict(nb, cells=cells)
    nb['metadata'] = dict(nb.get('metadata', {}), kernelspec=dict(name='python3', display_name='Python 3', language='python'))
    return nb


def title_of(nb: dict, fallback: str) -> str:
    for c in nb['cells']:
        if c['cell_type'] == 'markdown':
            m = re.match(r'#\s+(.+)', _src(c).strip())
            if m: return m.group(1).strip()
    return fallback


def module_page(mod_name: str, nb_name: str) -> str:
    mod = importlib.import_module(f'{PKG}.{mod_name}')
    doc = (mod.__doc__ or '').strip()
    parts = [f"# `{PKG}.{mod_name}`", '', doc, '', f"Explained in the notebook [{nb_name}](../{nb_name}.ipynb).", '']
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name)
        if inspect.isfunction(obj) or inspect.isclass(obj): parts.append(api_block(obj, name, level=2))
        else: parts.append(f"## {name}\n\n```python\n{name} = {obj!r:.200}\n```\n")
    return '\n'.join(parts)


def vendor_katex(version: str = KATEX_VERSION) -> Path:
    "Refill tools/katex/ from the npm package katex@version (`npm pack`): KATEX_FILES, the woff2 fonts and the LICENSE."
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(['npm', 'pack', f'katex@{version}', '--silent'], check=True, cwd=tmp, stdout=subprocess.DEVNULL)
        with tarfile.open(next(Path(tmp).glob('katex-*.tgz'))) as t:
            t.extractall(tmp, **({'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}))
        pkg = Path(tmp) / 'package'
        got = json.loads((pkg / 'package.json').read_text())['version']
        shutil.rmtree(KATEX, ignore_errors=True); (KATEX / 'contrib').mkdir(parents=True); (KATEX / 'fonts').mkdir()
        for f in KATEX_FILES: shutil.copy(pkg / 'dist' / f, KATEX / f)
        for f in (pkg / 'dist' / 'fonts').glob('*.woff2'): shutil.copy(f, KATEX / 'fonts' / f.name)
        shutil.copy(pkg / 'LICENSE', KATEX / 'LICENSE')
    css = KATEX / 'katex.min.css'                                       # only the woff2 fonts are kept: drop the woff/ttf sources
    css.write_text(re.sub(r',url\(fonts/[^)]+\.(?:woff|ttf)\) format\("(?:woff|truetype)"\)', '', css.read_text()))
    print(f"vendored KaTeX {got} in {KATEX} ({sum(f.stat().st_size for f in KATEX.rglob('*') if f.is_file())} bytes)")
    return KATEX


def on_page_content(html: str, page, config, files) -> str:
    "mkdocs hook: drop the MathJax and mermaid loaders (cdnjs) that nbconvert puts in the notebook pages; KaTeX renders the math."
    for pat in CDN_LOADERS: html = pat.sub('', html)
    return html


def build(serve: bool = False) -> Path:
    shutil.rmtree(BUILD, ignore_errors=True); (BUILD / 'api').mkdir(parents=True)
    nav, api_nav = [], []
    for path in sorted(NBS.glob('*.ipynb')):
        if path.name.startswith(('_', '.')): continue
        nb = process_notebook(path)
        (BUILD / path.name).write_text(json.dumps(nb, indent=1), encoding='utf-8')
        entry = {title_of(nb, path.stem): path.name}
        if path.stem == 'index': nav.insert(0, {'Home': 'index.ipynb'})
        else: nav.append(entry)
        m = default_exp(nb) or default_exp(json.loads(path.read_text(encoding='utf-8')))
        if m:
            (BUILD / 'api' / f'{m}.md').write_text(module_page(m, path.stem), encoding='utf-8')
            api_nav.append({f'{PKG}.{m}': f'api/{m}.md'})
    guides = []
    for title, f in PAGES:
        if (DOCS / f).exists():
            shutil.copy(DOCS / f, BUILD / f); guides.append({title: f})
    for extra in DOCS.glob('*'):             # pictures and other files the pages link to
        if extra.is_file() and extra.suffix != '.md': shutil.copy(extra, BUILD / extra.name)
    (BUILD / 'extra.css').write_text('.jp-InputPrompt, .jp-OutputPrompt { display: none !important; }\n')
    shutil.copytree(KATEX, BUILD / 'katex')                 # KaTeX, offline (see the module docstring)
    (BUILD / 'math.js').write_text(MATH_JS)
    cfg = dict(site_name='mesm_prem', site_description='MESM and PREM for video moment retrieval', docs_dir=str(BUILD), site_dir=str(SITE),
               use_directory_urls=False, theme=dict(name='material', font=False, features=['navigation.sections']),
               extra_css=['katex/katex.min.css', 'extra.css'], extra_javascript=['katex/katex.min.js', 'katex/contrib/auto-render.min.js', 'math.js'],
               markdown_extensions=MARKDOWN_EXTENSIONS,
               hooks=[str(Path(__file__).resolve())],
               plugins=['search', {'mkdocs-jupyter': dict(execute=False, include_source=True, ignore_h1_titles=False,
                                                          remove_tag_config=dict(remove_input_tags=['remove_input']))}],
               nav=[nav[0], {'Notebooks': nav[1:]}, {'Guides': guides}, {'API': api_nav}])
    import yaml
    (ROOT / '_mkdocs.yml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, '-m', 'mkdocs', 'serve' if serve else 'build', '-f', str(ROOT / '_mkdocs.yml')]
    if serve: cmd += ['-a', '127.0.0.1:8000']
    else: cmd += ['--quiet']
    import os
    subprocess.run(cmd, check=True, cwd=ROOT, env=dict(os.environ, NO_MKDOCS_2_WARNING='1'))
    return SITE


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--serve', action='store_true', help='serve the site on 127.0.0.1:8000 instead of only building it')
    ap.add_argument('--vendor-katex', metavar='VERSION', nargs='?', const=KATEX_VERSION,
                    help=f'refill tools/katex/ from the npm package katex@VERSION (default {KATEX_VERSION}) and exit')
    a = ap.parse_args()
    if a.vendor_katex: vendor_katex(a.vendor_katex); sys.exit()
    out = build(a.serve)
    print(f"built {out}/index.html")
