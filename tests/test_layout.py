"""The package's layout: the import order is the reading order, nothing imports in a circle, lines fit in 120 columns.

Each module is exported from one notebook `nbs/NN_name.ipynb`; a module may import only from modules of notebooks with
a smaller number (so the notebooks read top to bottom), at module level or inside a function."""
import ast
import re

from conftest import ROOT

PKG = ROOT / 'mesm_prem'


def _modules() -> dict:
    "module name -> (notebook number, path), from the `File to edit` line nbdev writes at the top of each module."
    out = {}
    for py in sorted(PKG.glob('*.py')):
        if py.name.startswith('_'): continue
        m = re.search(r'File to edit: \.\./nbs/(\d+)_\w+\.ipynb', py.read_text(encoding='utf-8'))
        assert m, f"{py.name} names no notebook"
        out[py.stem] = (int(m.group(1)), py)
    return out


def import_graph(pkg_dir=PKG, package='mesm_prem') -> dict:
    "module -> the set of package modules it imports (anywhere in the file: top level or inside functions)."
    graph = {}
    for py in sorted(pkg_dir.glob('*.py')):
        if py.name.startswith('_'): continue
        deps = set()
        for node in ast.walk(ast.parse(py.read_text(encoding='utf-8'))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1: name = node.module or ''
                elif (node.module or '').startswith(package + '.'): name = node.module[len(package) + 1:]
                elif node.module == package: name = ''
                else: continue
                if name: deps.add(name.split('.')[0])
                else: deps |= {a.name for a in node.names}      # `from . import x` / `from mesm_prem import x`
            elif isinstance(node, ast.Import):
                deps |= {a.name.split('.')[1] for a in node.names if a.name.startswith(package + '.')}
        graph[py.stem] = deps
    return graph


def find_cycle(graph: dict):
    "A list of modules forming an import cycle (first == last), or None."
    state, stack = {}, []
    def visit(m):
        state[m] = 'open'; stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 'open': return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = 'done'; stack.pop()
        return None
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c
    return None


def test_find_cycle_finds_cycles():
    "The checker itself: a cycle through three modules and a self-import are found, a chain is not."
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'a'}}) == ['a', 'a']
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None


def test_import_graph_sees_function_level_imports(tmp_path):
    (tmp_path / 'x.py').write_text('def f():\n    from .y import g\n    return g\n')
    (tmp_path / 'y.py').write_text('import mesm_prem.x\nfrom mesm_prem import z\n')
    assert import_graph(tmp_path) == {'x': {'y'}, 'y': {'x', 'z'}}
    assert find_cycle(import_graph(tmp_path)) == ['x', 'y', 'x']


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert set(graph) == set(_modules())
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_import_order_is_the_reading_order():
    "Every module imports only modules of earlier notebooks."
    mods, graph = _modules(), import_graph()
    late = [(m, d) for m, deps in graph.items() for d in deps if d in mods and mods[d][0] >= mods[m][0]]
    assert not late, [f"{m} ({mods[m][1].name}, notebook {mods[m][0]:02d}) imports {d} (notebook {mods[d][0]:02d})"
                      for m, d in late]


def test_one_module_per_notebook():
    nums = [n for n, _ in _modules().values()]
    assert len(nums) == len(set(nums)), 'two modules from one notebook'


def test_lines_fit_in_120_columns():
    """Every line of the package is at most 120 characters, except the first line of nbdev's generated `__all__`
    (nbdev wraps the list at 120 and then prefixes `__all__ = `). ruff (CI) checks the rest of its rules."""
    long = []
    for py in sorted(PKG.glob('*.py')):
        if py.name.startswith('_'): continue
        for i, line in enumerate(py.read_text(encoding='utf-8').splitlines(), 1):
            if len(line) > 120 and not line.startswith('__all__ = ['): long.append(f"{py.name}:{i}: {len(line)} chars")
    assert not long, long


def documented_imports() -> list:
    "(file, module, name) for every `from mesm_prem.X import a, b` written in the README, docs/ and notebook prose."
    import json
    texts = [(p, p.read_text(encoding='utf-8')) for p in [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]]
    for nb in sorted((ROOT / 'nbs').glob('*.ipynb')):
        cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
        texts.append((nb, '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')))
    out = []
    for p, t in texts:
        for mod, names in re.findall(r'from (mesm_prem(?:\.\w+)*) import ([\w, ]+)', t):
            out += [(p.name, mod, n.strip()) for n in names.split(',') if n.strip()]
    return out


def test_names_the_docs_import_exist():
    "Every `from mesm_prem.X import Y` in the README, the guides and the notebooks' prose imports."
    import importlib
    found = documented_imports()
    assert len(found) >= 5
    bad = [f"{f}: from {m} import {n}" for f, m, n in found
           if not hasattr(importlib.import_module(m), n)]
    assert not bad, bad
