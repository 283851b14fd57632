"Run every notebook's cells, as nbdev_test does (cells flagged slow/cuda/notest are skipped unless NBDEV_FLAGS names them)."
import os

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook   # renamed so pytest does not collect it

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / 'nbs').glob('[!_.]*.ipynb'))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_notebook(nb):
    cfg = get_config()
    ok, _ = run_notebook(nb, skip_flags=cfg.tst_flags.split(), force_flags=os.environ.get('NBDEV_FLAGS', '').split())
    assert ok, f"{nb.name} failed (the traceback is above)"
