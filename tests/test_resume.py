"""Exact resume: a training process killed with SIGKILL in the middle of an epoch, then resumed, ends with
the same weights (bit for bit) as an uninterrupted run."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import sys, time, torch
    from torch import nn
    from mesm_prem.training import Trainer, TrainerConfig, seed_everything
    run, slow = sys.argv[1], float(sys.argv[2])
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 4, generator=g); Y = X @ torch.tensor([[1.], [-2.], [0.5], [3.]])
    def loader(epoch):
        perm = torch.randperm(96, generator=torch.Generator().manual_seed(epoch))
        return [(X[perm[i:i + 8]], Y[perm[i:i + 8]]) for i in range(0, 96, 8)]
    def step(model, b):
        time.sleep(slow)
        h = nn.functional.dropout(model[0](b[0]), 0.3, training=True)     # consumes the global generator
        loss = ((model[1](torch.relu(h)) - b[1]) ** 2).mean()
        return dict(mse=loss), loss
    def evaluate(model):
        with torch.no_grad(): return dict(neg_mse=-float(((model[1](torch.relu(model[0](X))) - Y) ** 2).mean()))
    seed_everything(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 1))
    cfg = TrainerConfig(lr=0.01, weight_decay=0.01, epochs=4, stop_score='neg_mse', save_every=1, progress=False)
    Trainer(model, step, loader, evaluate, run, cfg).fit()
''')


def _run(script, run, slow):
    return subprocess.Popen([sys.executable, str(script), str(run), str(slow)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.skipif(not hasattr(signal, 'SIGKILL'), reason='needs SIGKILL')
def test_sigkill_mid_epoch_then_resume(tmp_path):
    script = tmp_path / 'train.py'; script.write_text(SCRIPT)
    ref = _run(script, tmp_path / 'ref', 0.0); assert ref.wait(120) == 0, ref.stderr.read().decode()
    run = tmp_path / 'killed'
    p = _run(script, run, 0.05)
    state = run / 'checkpoints' / 'state.pt'
    t0 = time.time()
    while True:   # wait until the run is in the middle of its second epoch
        if state.exists():
            st = torch.load(state, weights_only=True)['trainer']
            if st['epoch'] == 1 and st['step_in_epoch'] >= 4: break
        assert p.poll() is None and time.time() - t0 < 120, 'the run ended before it could be killed'
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    st = torch.load(state, weights_only=True)['trainer']
    assert st['epoch'] == 1 and 0 < st['step_in_epoch'] < 12    # killed mid-epoch
    r = _run(script, run, 0.0); assert r.wait(120) == 0, r.stderr.read().decode()
    a = torch.load(tmp_path / 'ref' / 'checkpoints' / 'last.pt', weights_only=True)
    b = torch.load(run / 'checkpoints' / 'last.pt', weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (run / 'metrics.jsonl').read_text().count('\n') == 4 and (run / 'plots' / 'curves.png').exists()
