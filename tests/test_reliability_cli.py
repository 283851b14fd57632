"""Bad input and honest numbers through the `mesm-prem` command (issue 14): one line on stderr and a non-zero status
instead of a traceback or a silently wrong number; predictions that score against their own ground truth; evaluation
that neither depends on nor moves the global random stream; model selection that says which split it used."""
import errno
import json
import random
import shutil

import numpy as np
import pytest
import torch

from mesm_prem import cli
from mesm_prem.cli import main
from mesm_prem.config import apply_overrides, load_config, save_config
from mesm_prem.experiments import MESMExperiment
from mesm_prem.run_mesm import MESMPredictor, evaluate_mesm, ground_truth, heldout_videos, mesm_dataset, read_split, split_annotations
from mesm_prem.experiments import synthetic_experiment

TINY = ['train.epochs=1', 'model.ss=false', 'model.hidden=32', 'model.d_ff=64']


def run(capsys, *argv):
    "main() in-process: (status, stdout, stderr)."
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err, command, contains):
    "stderr is exactly one line `mesm-prem COMMAND: error: ...` containing `contains`."
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'mesm-prem {command}: error: ') and contains in lines[0], err
    assert 'Traceback' not in err


@pytest.fixture(scope='module')
def mesm_run(synth, tmp_path_factory):
    "A one-epoch MESM run on the session's synthetic benchmark (no validation split: selected on held-out videos)."
    root, man = synth
    d = tmp_path_factory.mktemp('mesm_run') / 'run'
    rc = main(['train', 'mesm', '--synthetic', str(root), '--set', *TINY, '--run-dir', str(d), '--quiet',
               '--device', 'cpu'])
    assert rc == 0
    return root, d


# -- 1. predict: numbers that cannot make sense stop in the parser ---------------------------------------------------
@pytest.mark.parametrize('args,message', [
    (['--top-k', '-1'], "argument --top-k: must be an integer >= 1, got '-1'"),
    (['--top-k', '0'], "argument --top-k: must be an integer >= 1, got '0'"),
    (['--top-k', '2.5'], "argument --top-k: must be an integer >= 1, got '2.5'"),
    (['--duration', '-5'], "argument --duration: must be a finite number of seconds > 0, got '-5'"),
    (['--duration', '0'], "argument --duration: must be a finite number of seconds > 0, got '0'"),
    (['--duration', 'nan'], "argument --duration: must be a finite number of seconds > 0, got 'nan'"),
    (['--duration', 'inf'], "argument --duration: must be a finite number of seconds > 0, got 'inf'"),
])
def test_predict_refuses_bad_numbers(capsys, tmp_path, args, message):
    rc, out, err = run(capsys, 'predict', tmp_path, '--video', 'v', *args)
    assert rc == 2 and out == ''
    one_line_error(err, 'predict', message)


def test_parser_errors_are_one_line_and_help_still_works(capsys):
    rc, _, err = run(capsys, 'predict', 'somewhere')
    assert rc == 2
    one_line_error(err, 'predict', 'one of the arguments --video --video-file is required (see mesm-prem predict --help)')
    rc, out, _ = run(capsys, 'predict', '--help')
    assert rc == 0 and out.startswith('usage: mesm-prem predict')


def test_predict_ids_score_against_the_ground_truth(capsys, mesm_run, tmp_path):
    "predict -> evaluate through the CLI: the qids keep the annotations' int type; the scores are the windows' IoUs."
    root, d = mesm_run
    exp = load_config(MESMExperiment, d / 'config.json')
    test = read_split(exp, 'test')
    vid = test.queries[0].vid
    rc, out, err = run(capsys, 'predict', d, '--video', vid, '--split', 'test', '--top-k', 3,
                       '--out', tmp_path / 'p.jsonl', '--device', 'cpu')
    assert rc == 0, err
    pred = [json.loads(l) for l in (tmp_path / 'p.jsonl').read_text().splitlines()]
    mine = [q for q in test if q.vid == vid]
    assert [p['qid'] for p in pred] == [q.qid for q in mine] and all(type(p['qid']) is int for p in pred)
    assert all(len(p['pred_relevant_windows']) == 3 for p in pred)
    gt = [g for g in ground_truth(test) if g['vid'] == vid]
    (tmp_path / 'gt.jsonl').write_text(''.join(json.dumps(g) + '\n' for g in gt))
    rc, out, err = run(capsys, 'evaluate', 'vmr', '--submission', tmp_path / 'p.jsonl', '--gt', tmp_path / 'gt.jsonl')
    assert rc == 0, err
    brief = json.loads(out)['brief']

    def iou(a, b):
        inter = max(0., min(a[1], b[1]) - max(a[0], b[0]))
        return inter / (max(a[1], b[1]) - min(a[0], b[0]))
    top1 = {p['qid']: p['pred_relevant_windows'][0] for p in pred}
    best = [max(iou(top1[g['qid']], w) for w in g['relevant_windows']) for g in gt]
    assert brief['MR-full-R1@0.5'] == pytest.approx(100 * np.mean([b >= 0.5 for b in best]), abs=0.01)
    assert brief['MR-full-miou'] == pytest.approx(100 * np.mean(best), abs=0.01)


# -- 2. one line instead of a traceback ------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
@pytest.mark.parametrize('command', [['predict', 'RUN', '--video', 'v'], ['search', 'RUN', '--out', 'x.json'],
                                     ['train', 'mesm', '--synthetic', 'B', '--run-dir', 'R'], ['demo', '--quick']])
def test_device_cuda_without_a_gpu(capsys, tmp_path, command):
    rc, _, err = run(capsys, *command, '--device', 'cuda')
    assert rc == 2
    one_line_error(err, command[0], "argument --device: 'cuda': CUDA is not available on this machine")
    assert not (tmp_path / 'R').exists()


def test_run_folders_of_the_other_model(capsys, mesm_run, tmp_path):
    from mesm_prem.experiments import PREMExperiment
    _, d = mesm_run
    rc, _, err = run(capsys, 'search', d, '--out', tmp_path / 's.json', '--device', 'cpu')
    assert rc == 2
    one_line_error(err, 'search', 'a MESM run folder, but search needs a PREM run (a MESM run localises sentences')
    prem = tmp_path / 'prem'; (prem / 'retriever').mkdir(parents=True)
    save_config(PREMExperiment(), prem / 'config.json')
    rc, _, err = run(capsys, 'predict', prem, '--video', 'v', '--device', 'cpu')
    assert rc == 2
    one_line_error(err, 'predict', 'a PREM run folder, but predict needs a MESM run (a PREM run searches a corpus')
    rc, _, err = run(capsys, 'train', 'prem', '--synthetic', tmp_path, '--run-dir', d)
    assert rc == 2
    one_line_error(err, 'train', 'holds a MESM run; train in another folder')


@pytest.mark.parametrize('command', ['predict', 'search'])
def test_missing_run_folder_and_config(capsys, tmp_path, command):
    extra = ['--video', 'v'] if command == 'predict' else ['--out', str(tmp_path / 's.json')]
    rc, _, err = run(capsys, command, tmp_path / 'nope', *extra, '--device', 'cpu')
    assert rc == 2
    one_line_error(err, command, f"run folder not found: {tmp_path / 'nope'}")
    rc, _, err = run(capsys, command, tmp_path, *extra, '--device', 'cpu')
    assert rc == 2
    one_line_error(err, command, 'not a run folder: no config.json')


def test_empty_or_missing_checkpoint(capsys, mesm_run, tmp_path):
    _, d = mesm_run
    bad = tmp_path / 'run'
    shutil.copytree(d, bad)
    (bad / 'checkpoints' / 'best.pt').write_bytes(b'')
    rc, _, err = run(capsys, 'predict', bad, '--video', 'v', '--device', 'cpu')
    assert rc == 2
    one_line_error(err, 'predict', 'best.pt')
    (bad / 'checkpoints' / 'best.pt').unlink()
    rc, _, err = run(capsys, 'predict', bad, '--video', 'v', '--device', 'cpu')
    assert rc == 2
    one_line_error(err, 'predict', 'checkpoint not found')


def test_train_inputs(capsys, synth, tmp_path):
    root, _ = synth
    rc, _, err = run(capsys, 'train', 'mesm', '--synthetic', tmp_path / 'nobench', '--run-dir', tmp_path / 'r')
    assert rc == 2
    one_line_error(err, 'train', f"--synthetic {tmp_path / 'nobench'}: no benchmark.json (write one: mesm-prem synth")
    (tmp_path / 'afile').write_text('x')
    rc, _, err = run(capsys, 'train', 'mesm', '--synthetic', root, '--run-dir', tmp_path / 'afile')
    assert rc == 2
    one_line_error(err, 'train', 'afile: a file, not a folder')
    rc, _, err = run(capsys, 'train', 'mesm', '--config', tmp_path / 'missing.json', '--run-dir', tmp_path / 'r')
    assert rc == 2
    one_line_error(err, 'train', 'config file not found')
    rc, _, err = run(capsys, 'train', 'mesm', '--preset', 'nope', '--run-dir', tmp_path / 'r')
    assert rc == 2
    one_line_error(err, 'train', "unknown mesm preset 'nope'")
    assert not (tmp_path / 'r').exists()


def test_main_reports_expected_errors_and_keeps_bugs(capsys, monkeypatch):
    "Expected failures (a diverging loss, CUDA out of memory, Ctrl-C) are one line; other errors keep their traceback."
    def raising(e):
        def f(a): raise e
        return f
    cases = [(FloatingPointError('non-finite loss at step 3 (rank 0): nan'), 2, 'non-finite loss at step 3'),
             (torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB\nmore text'), 1,
              'CUDA out of memory.'),
             (KeyboardInterrupt(), 130, 'interrupted'),
             (OSError(errno.ENOSPC, 'run/checkpoints/state.pt: could not be written (No space left on device)'), 2,
              'state.pt: could not be written (No space left on device)')]
    for e, code, message in cases:
        monkeypatch.setattr(cli, 'cmd_synth', raising(e))
        rc, _, err = run(capsys, 'synth', 'somewhere')
        assert rc == code
        one_line_error(err, 'synth', message)
    monkeypatch.setattr(cli, 'cmd_synth', raising(RuntimeError('a bug in our code')))
    with pytest.raises(RuntimeError, match='a bug in our code'): main(['synth', 'somewhere'])
    monkeypatch.setattr(cli, 'cmd_synth', raising(KeyError('x')))
    with pytest.raises(KeyError): main(['synth', 'somewhere'])
    monkeypatch.setattr(cli, 'cmd_synth', raising(OSError(errno.EIO, 'an I/O error is not a full disk')))
    with pytest.raises(OSError, match='not a full disk'): main(['synth', 'somewhere'])


# -- 3. evaluation and prediction do not depend on, nor move, the global random stream -------------------------------
def _seed(s):
    torch.manual_seed(s); np.random.seed(s); random.seed(s)


def _states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same(a, b):
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_prediction_and_evaluation_ignore_the_global_seed(mesm_run):
    _, d = mesm_run
    p = MESMPredictor(d, device='cpu')
    vid = read_split(p.exp, 'test').queries[0].vid
    ds = mesm_dataset(p.exp, 'test')
    preds, evals = [], []
    for s in (0, 123):
        _seed(s); before = _states()
        preds.append(p.predict_video(vid, splits=['test'], top_k=10))
        assert _same(before, _states())
        evals.append(evaluate_mesm(p.model, ds, p.exp, 'cpu'))
        assert _same(before, _states())
    assert preds[0] == preds[1]                       # the same process and kernels: exactly equal
    assert evals[0][1] == evals[1][1] and evals[0][0] == evals[1][0]


# -- 4. honest model selection ---------------------------------------------------------------------------------------
def test_selection_on_heldout_training_videos(mesm_run):
    root, d = mesm_run
    exp = load_config(MESMExperiment, d / 'config.json')
    res = json.loads((d / 'results.json').read_text())
    assert res['selected_on'] == 'heldout' and sorted(res['results']) == ['heldout', 'test']
    sel = res['selection']
    got = (sel['split'], sel['heldout_from'], sel['heldout_fraction'], sel['heldout_seed'])
    assert got == ('heldout', 'train', 0.1, 0)
    assert 'warning' not in sel
    held = json.loads((d / 'heldout_videos.json').read_text())
    train = read_split(exp, 'train')
    assert held['videos'] == heldout_videos(exp)
    assert len(held['videos']) == round(0.1 * len(train.videos)) == sel['heldout_videos'] == 2
    tr, ho = split_annotations(exp, 'train'), split_annotations(exp, 'heldout')
    assert set(tr.videos).isdisjoint(ho.videos) and set(tr.videos) | set(ho.videos) == set(train.videos)
    assert len(tr) + len(ho) == len(train) and set(ho.videos) == set(held['videos'])
    sub = [json.loads(l) for l in (d / 'predictions' / 'heldout_submission.jsonl').read_text().splitlines()]
    assert {s['qid'] for s in sub} == {q.qid for q in ho}


def test_heldout_draw_is_its_own(synth):
    root, _ = synth
    exp = synthetic_experiment(root)
    _seed(5); a = heldout_videos(exp)
    _seed(6); b = heldout_videos(exp)
    assert a == b == sorted(a)                           # the global seed plays no part
    other = apply_overrides(exp, ['data.heldout_seed=1', 'data.heldout_fraction=0.5'])
    assert len(heldout_videos(other)) == len(read_split(exp, 'train').videos) // 2 and heldout_videos(other) != a


def test_selecting_on_test_warns(capsys, synth, tmp_path):
    root, _ = synth
    rc, out, err = run(capsys, 'train', 'mesm', '--synthetic', root, '--set', *TINY, 'data.val_split=test',
                       '--run-dir', tmp_path / 'run', '--quiet', '--device', 'cpu')
    assert rc == 0, err
    assert "mesm-prem: warning: the model is selected on the evaluation split 'test' (the official protocol)" in err
    res = json.loads((tmp_path / 'run' / 'results.json').read_text())
    assert res['selected_on'] == 'test' and 'optimistic' in res['selection']['warning']
    assert not (tmp_path / 'run' / 'heldout_videos.json').exists()


# -- 5. settings that cannot run stop before any work ----------------------------------------------------------------
@pytest.mark.parametrize('override,message', [
    ('train.epochs=0', '--set train.epochs=0: must be an integer >= 1, got 0'),
    ('train.lr=0', '--set train.lr=0: must be a finite number > 0, got 0.0'),
    ('train.batch_size=0', '--set train.batch_size=0: must be an integer >= 1, got 0'),
    ('train.eval_batch_size=-2', '--set train.eval_batch_size=-2: must be an integer >= 1, got -2'),
    ('data.heldout_fraction=1.5', '--set data.heldout_fraction=1.5: must be a number in (0, 1), got 1.5'),
    ('data.val_split=val', "data.val_split must be 'heldout' (held out of the training split) or a split of"),
    ('train.stop_score=MR-mAP', "train.stop_score must be one of ['MR-full-mAP'"),
])
def test_train_validates_before_any_work(capsys, synth, tmp_path, override, message):
    root, _ = synth
    rc, out, err = run(capsys, 'train', 'mesm', '--synthetic', root, '--set', override, '--run-dir', tmp_path / 'run')
    assert rc == 2 and out == ''
    one_line_error(err, 'train', message)
    assert not (tmp_path / 'run').exists()
