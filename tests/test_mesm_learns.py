"""MESM learns on the synthetic benchmark in a short CPU run (about a minute and a half on 2 cores).

Short runs on this benchmark are sensitive to the random stream: floating-point differences of 1e-7 (another CPU's
kernels) change the trajectory. With the demo's settings (7 epochs at lr 3e-3) training seeds 0-5 gave R1@0.5 of
30-58 here, but CI's machine reached 23 with seed 0 (the baseline is 12.84), and at 12 epochs seed 5 diverged
(loss spike, R1@0.5 9.5). At lr 1e-3 for 10 epochs, the setting below, seeds 0-5 gave R1@0.5 of 49-74, mIoU 44-59,
mAP 27-42 (2-core CPU, 2026-11-22); the demo now trains so too. The thresholds ask for learning, with a wide margin, not for a lucky trajectory."""
import dataclasses
import json

import torch

from mesm_prem.synthetic import write_synthetic_benchmark
from mesm_prem.run_mesm import constant_window_baseline, read_split, train_mesm
from mesm_prem.experiments import synthetic_experiment


def test_mesm_beats_the_constant_window_baseline(tmp_path):
    torch.set_num_threads(2)
    write_synthetic_benchmark(tmp_path / 'bench')
    exp = synthetic_experiment(tmp_path / 'bench', epochs=10)          # lr 1e-3, as the demo
    res = train_mesm(exp, tmp_path / 'run', device='cpu', progress=False)['test']
    base = constant_window_baseline(read_split(exp, 'train'), read_split(exp, 'test'))
    print({k: (res[k], base[k]) for k in ('MR-full-R1@0.5', 'MR-full-R1@0.7', 'MR-full-miou', 'MR-full-mAP')})
    assert res['MR-full-R1@0.5'] > 2 * base['MR-full-R1@0.5']
    assert res['MR-full-miou'] > base['MR-full-miou'] + 10
    assert res['MR-full-mAP'] > 2 * base['MR-full-mAP']
    run = tmp_path / 'run'
    assert (run / 'checkpoints' / 'best.pt').exists() and (run / 'plots' / 'curves.png').exists()
    assert json.loads((run / 'results.json').read_text())['selected_on'] == 'val'   # selection never sees the test split
    sub = (run / 'predictions' / 'test_submission.jsonl').read_text().splitlines()
    assert len(sub) == len(read_split(exp, 'test'))
