from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / 'tests' / 'fixtures'
# Optional: the full public annotation files (a `data` folder of a `shared` folder beside the checkout). Tests that
# read them are skipped when the folder is absent (a user's clone has only the excerpts of tests/fixtures).
SHARED = ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def synth(tmp_path_factory):
    "A small synthetic benchmark, written once per test session."
    from mesm_prem.synthetic import SynthConfig, write_synthetic_benchmark
    root = tmp_path_factory.mktemp('synth')
    cfg = SynthConfig(seed=1, vmr_videos=dict(train=16, test=6), vcmr_videos=dict(train=12, val=5, test_public=3))
    return root, write_synthetic_benchmark(root, cfg)
