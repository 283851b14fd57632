"Data-parallel training under torchrun (gloo, 2 CPU processes) against one process with the same global batches."
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT/'tests'/'workers'/'ddp_regression.py'


def torchrun(n: int, *args, timeout=600):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n), *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_two_processes_reach_the_weights_of_one(tmp_path):
    r = subprocess.run([sys.executable, str(WORKER), tmp_path/'one', tmp_path/'one.pt'], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    torchrun(2, WORKER, tmp_path/'two', tmp_path/'two.pt')
    one, two = torch.load(tmp_path/'one.pt'), torch.load(tmp_path/'two.pt')
    rank1 = torch.load(f"{tmp_path/'two.pt'}.rank1")
    start = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    for k in one:
        assert torch.equal(two[k], rank1[k]), k                                  # the ranks agree exactly
        # and end where one process does, up to the all-reduce's rounding (4.2e-7 measured; 1e-4 holds on any CPU)
        assert (two[k] - one[k]).abs().max() < 1e-4, (k, (two[k] - one[k]).abs().max())
    moved = max((one[k] - v).abs().max().item() for k, v in start.state_dict().items())
    assert moved > 0.05                                                          # (and training moved the weights)
    # rank 0 alone writes the run folder: one log line per epoch, checkpoints, a generator file per other rank
    recs = [json.loads(l) for l in (tmp_path/'two'/'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in recs] == [1, 2, 3, 4]
    ck = tmp_path/'two'/'checkpoints'
    assert {p.name for p in ck.iterdir()} == {'best.pt', 'last.pt', 'state.pt', 'rng_rank1.pt'}
    one_recs = [json.loads(l) for l in (tmp_path/'one'/'metrics.jsonl').read_text().splitlines()]
    for a, b in zip(one_recs, recs): assert abs(a['val/neg_mse'] - b['val/neg_mse']) < 1e-4


@pytest.mark.parametrize('model,sets', [('mesm', ['train.epochs=1', 'train.batch_size=8']),
                                        ('prem', ['train.retriever.epochs=1', 'train.localizer.epochs=1'])])
def test_train_command_under_torchrun(synth, tmp_path, model, sets):
    "`mesm-prem train` under torchrun: rank 0 writes the run (one log line per epoch), the results come back on its stdout."
    root, man = synth
    run = tmp_path/'run'
    r = torchrun(2, '-m', 'mesm_prem.cli', 'train', model, '--synthetic', root, '--set', *sets, '--run-dir', run, '--quiet', '--device', 'cpu')
    res = json.loads(r.stdout)                                             # rank 0 alone reports (rank 1 returns {} and prints nothing)
    assert ('test' if model == 'mesm' else 'val') in res
    logs = ['metrics.jsonl'] if model == 'mesm' else ['retriever/metrics.jsonl', 'localizer/metrics.jsonl']
    for f in logs: assert len((run/f).read_text().splitlines()) == 1, f
    assert (run/'results.json').exists()
