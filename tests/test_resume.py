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
    # the log too, train/* means of the interrupted epoch included (its running sums are part of the state)
    assert (run / 'metrics.jsonl').read_text() == (tmp_path / 'ref' / 'metrics.jsonl').read_text()


# -- PREM: a run killed in each of its stages, then started again, ends as an uninterrupted one ----------
PREM_SCRIPT = textwrap.dedent('''
    import os, signal, sys, torch
    from pathlib import Path
    from mesm_prem import config, experiments, run_prem, training
    bench, run, stage, at = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    exp = experiments.synthetic_prem_experiment(bench, retriever_epochs=2, localizer_epochs=3)
    exp = config.apply_overrides(exp, ['train.retriever.batch_size=16', 'train.localizer.batch_size=16',
                                       'train.retriever.save_every=2', 'train.localizer.save_every=2'])
    calls = dict(retriever=0, localizer=0)
    step = training.Trainer.train_step
    def killing_step(self, batch):   # SIGKILL before the `at`-th step of a stage (run folder retriever/, localizer/)
        calls[self.run.name] += 1
        if self.run.name == stage and calls[stage] == at: os.kill(os.getpid(), signal.SIGKILL)
        return step(self, batch)
    training.Trainer.train_step = killing_step
    rank = run_prem.rank_training_corpus
    def killing_rank(*a, **k):       # the ranking done, half of its file written, then SIGKILL
        out = rank(*a, **k)
        if stage == 'ranking':
            (run / 'hard_negatives.json.partial').write_text(run_prem.json.dumps(out)[:100])
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    run_prem.rank_training_corpus = killing_rank
    run_prem.train_prem(exp, run, device='cpu', progress=False)
''')


def _prem(script, bench, run, stage='none', at=0):
    cmd = [sys.executable, str(script), str(bench), str(run), stage, str(at)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stderr


def _val_records(path):
    "Every record of a log (train/* means of an interrupted epoch included: the running sums are resumed too)."
    import json
    return [json.loads(l) for l in path.read_text().splitlines()]


def _same_prem_runs(a, b):
    for stage in ('retriever', 'localizer'):
        for f in ('best', 'last'):
            x = torch.load(a / stage / 'checkpoints' / f'{f}.pt', weights_only=True)
            y = torch.load(b / stage / 'checkpoints' / f'{f}.pt', weights_only=True)
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), (stage, f)
        assert _val_records(a / stage / 'metrics.jsonl') == _val_records(b / stage / 'metrics.jsonl'), stage
    for f in ('hard_negatives.json', 'results.json', 'predictions/val_submission.json', 'predictions/val_metrics.json'):
        assert (a / f).read_text() == (b / f).read_text(), f


@pytest.fixture(scope='module')
def prem_reference(synth, tmp_path_factory):
    "An uninterrupted PREM run (2 + 3 epochs of 3 steps, states saved every 2 steps) on the session's benchmark."
    d = tmp_path_factory.mktemp('prem_resume')
    script = d / 'train_prem.py'; script.write_text(PREM_SCRIPT)
    rc, err = _prem(script, synth[0], d / 'ref')
    assert rc == 0, err
    return script, d / 'ref'


@pytest.mark.skipif(not hasattr(signal, 'SIGKILL'), reason='needs SIGKILL')
@pytest.mark.parametrize('stage,at', [('retriever', 6), ('ranking', 0), ('localizer', 6)])
def test_prem_sigkill_in_each_stage_then_resume(prem_reference, synth, tmp_path, stage, at):
    "Killed before the 6th step of a stage (mid epoch 2, resumed from its state saved after step 4), or in the ranking."
    script, ref = prem_reference
    run = tmp_path / 'killed'
    rc, err = _prem(script, synth[0], run, stage, at)
    assert rc == -signal.SIGKILL, err
    if stage == 'ranking':
        assert (run / 'hard_negatives.json.partial').exists() and not (run / 'hard_negatives.json').exists()
    else:
        st = torch.load(run / stage / 'checkpoints' / 'state.pt', weights_only=True)['trainer']
        assert (st['epoch'], st['step_in_epoch']) == (1, 1)    # a mid-epoch state
    assert not (run / 'results.json').exists()
    rc, err = _prem(script, synth[0], run)
    assert rc == 0, err
    _same_prem_runs(ref, run)
