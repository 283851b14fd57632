"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which is not available here).

    python tools/make_readme.py                  # write README.md
    python tools/make_readme.py --check          # exit 1 when README.md is out of date
    python tools/make_readme.py --quickstart     # print the README's two quick-start commands, one per line
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NB, README = ROOT / 'nbs' / 'index.ipynb', ROOT / 'README.md'


def _src(cell):
    s = cell['source']
    return ''.join(s) if isinstance(s, list) else s


def _directives(src):
    return [l[3:].strip() for l in src.splitlines() if l.startswith('#|')]


def _outputs(cell):
    out = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream': out.append(''.join(o['text']))
        elif 'data' in o and 'text/plain' in o['data']: out.append(''.join(o['data']['text/plain']))
    return ''.join(out).rstrip('\n')


def render(nb_path=NB) -> str:
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    parts = ['<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->']
    for cell in nb['cells']:
        src = _src(cell)
        if cell['cell_type'] == 'markdown':
            parts.append(src.strip())
            continue
        if cell['cell_type'] != 'code' or any(d in ('hide', 'include: false') for d in _directives(src)): continue
        code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
        if code: parts.append(f"```python\n{code}\n```")
        out = _outputs(cell)
        if out: parts.append(f"```\n{out}\n```")
    return '\n\n'.join(parts) + '\n'


def quickstart(text: str) -> list:
    "The shell commands of the README's Quick start section."
    m = re.search(r'^## Quick start\n(.*?)(?=^## |\Z)', text, flags=re.S | re.M)
    if not m: raise SystemExit('README.md has no "## Quick start" section')
    return [b.strip() for b in re.findall(r'```sh\n(.*?)```', m.group(1), flags=re.S)]


if __name__ == '__main__':
    arg = sys.argv[1] if len(sys.argv) > 1 else ''
    if arg == '--check':
        if not README.exists() or README.read_text(encoding='utf-8') != render():
            sys.exit('README.md is out of date: run python tools/make_readme.py')
    elif arg == '--quickstart':
        print('\n'.join(quickstart(README.read_text(encoding='utf-8'))))
    else:
        README.write_text(render(), encoding='utf-8')
