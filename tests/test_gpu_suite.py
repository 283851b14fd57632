"""bench/gpu_suite.sh, the one call that measures everything on a lent GPU, checked without running it: it is valid bash,
every flag it passes is one the called program's --help has, and its step timeouts fit the device tool's call."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import lru_cache

import pytest

from conftest import ROOT

SUITE = ROOT / 'bench' / 'gpu_suite.sh'
STEPS = {'env', 'install', 'nbdev_cuda', 'mesm_speed', 'mesm_fp32', 'mesm_compile', 'prem_search', 'corpus_scale',
         'corpus_1m', 'demo', 'merge'}


@pytest.mark.parametrize('script', ['gpu_suite.sh', 'gpu_wheels.sh'])
def test_valid_bash(script):
    r = subprocess.run(['bash', '-n', str(ROOT / 'bench' / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@lru_cache(maxsize=None)
def plan(dry: bool) -> tuple:
    "The suite's steps, (name, timeout, argv), as `--plan` prints them without running any."
    r = subprocess.run(['bash', str(SUITE), '--plan'] + ['--dry-run'] * dry, capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, 'PYTHON': sys.executable})
    assert r.returncode == 0, r.stderr
    steps = [line.split('\t') for line in r.stdout.splitlines() if line.startswith('STEP\t')]
    return tuple((name, int(t), shlex.split(cmd)) for _, name, t, cmd in steps)


def test_steps_and_timeouts():
    "Every step has its own timeout; on the GPU they sum to under 450 s (7.5 minutes: the device call's 8, less grace)."
    for dry in (False, True):
        steps = plan(dry)
        assert {n for n, _, _ in steps} == STEPS and len(steps) == len(STEPS), [n for n, _, _ in steps]
        assert all(t > 0 for _, t, _ in steps)
    total = sum(t for _, t, _ in plan(False))
    assert total < 450, f"the GPU steps' timeouts sum to {total} s"
    assert re.search(r'^DEADLINE=\$\{DEADLINE:-(\d+)\}', SUITE.read_text(), re.M)


@lru_cache(maxsize=None)
def help_text(*argv) -> str:
    r = subprocess.run(list(argv) + ['--help'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, (argv, r.stderr[-2000:])
    return r.stdout


def flags(argv) -> list:
    return [a.split('=')[0] for a in argv if re.fullmatch(r'--[a-z][\w-]*(=.*)?', a)]


@pytest.mark.parametrize('dry', [False, True], ids=['gpu', 'dry-run'])
def test_every_flag_exists(dry):
    "Each bench script, `mesm-prem demo` and nbdev_test the suite calls has every flag the suite passes it."
    checked = 0
    for name, _, argv in plan(dry):
        if argv[0] == 'env':   # env VAR=VALUE ... program ...
            argv = argv[1:]
            while '=' in argv[0]: argv = argv[1:]
        script = next((a for a in argv if re.fullmatch(r'bench/\w+\.py', a)), None)
        if script:
            helptext, passed = help_text(sys.executable, str(ROOT / script)), flags(argv[argv.index(script) + 1:])
        elif 'demo' in argv and (argv[0] == 'mesm-prem' or 'mesm_prem.cli' in argv):
            helptext, passed = help_text(sys.executable, '-m', 'mesm_prem.cli', 'demo'), flags(argv[argv.index('demo') + 1:])
        elif argv[:1] == ['nbdev_test']:
            if not shutil.which('nbdev_test'): continue
            helptext, passed = help_text('nbdev_test'), flags(argv[1:])
        else:
            assert argv[:2] == ['bash', str(SUITE)] and argv[2].startswith('--_'), (name, argv)   # the suite's own steps
            assert f"\n{argv[2]})" in SUITE.read_text(), argv[2]
            continue
        missing = [f for f in passed if not re.search(rf'(^|[\s\[,]){re.escape(f)}([\s\],=]|$)', helptext, re.M)]
        assert not missing, f"step {name} passes {missing}, which `{' '.join(argv[:2])} --help` does not list"
        checked += 1
    assert checked >= 6


def test_at_most_8_files_come_back():
    "The device tool brings back at most 8 files: summary.json, suite.log, gpu_suite.tar.gz and at most 5 loose JSONs."
    m = re.search(r'^pack\(\) \{.*?^  for f in ([^;]+); do', SUITE.read_text(), re.M | re.S)
    loose = m and m.group(1).replace('\\', ' ').split()
    assert loose and 3 + len(loose) <= 8, loose
