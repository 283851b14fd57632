"""Reliability of configs, run folders and checkpoints (issue 14): overrides checked when parsed, training settings
checked before any work, resumes that would change a run refused, full disks, empty checkpoints, bad feature files."""
import errno
import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from mesm_prem.cli import main
from mesm_prem.config import RESUME_SAFE, ConfigError, apply_overrides, atomic_save, check_resume, config_changes, config_to_dict, load_config, safe_load, save_config
from mesm_prem.stores import H5Store
from mesm_prem.datasets import dataset_stats
from mesm_prem.records import read_charades_sta
from mesm_prem.records import DataError
from mesm_prem.experiments import MESMExperiment, PREMExperiment, PRESETS, preset
from mesm_prem.training import Trainer, TrainerConfig, read_metrics, seed_everything


def _mesm(*overrides):
    "The Charades-STA C+SF preset with overrides."
    return preset('mesm', 'charades_sta_C+SF_C', list(overrides))


def run_cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


# -- 1. overrides ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('override, message', [
    ('data.eval_splits=val', '--set data.eval_splits=val: expected a list (e.g. ["val"]), got \'val\''),
    ('data.video_features=[1]', '--set data.video_features=[1]: data.video_features[0]: expected a string, got 1'),
    ('train.epochs=2.5', '--set train.epochs=2.5: expected an integer, got 2.5'),
    ('train.epochs=true', '--set train.epochs=true: expected an integer, got True'),
    ('train.deterministic=yes', "--set train.deterministic=yes: expected true or false, got 'yes'"),
    ('train.precision=fp16', "--set train.precision=fp16: must be one of ['auto', 'fp32', 'bf16'], got 'fp16'"),
    ('train.amp=true', "--set train.amp=true: unknown key 'amp' in train, now train.precision"),
    ('train.lr=fast', "--set train.lr=fast: expected a number, got 'fast'"),
    ('loss.weights.loss_span=big', "--set loss.weights.loss_span=big: expected a number, got 'big'"),
    ('loss.matcher=3', "--set loss.matcher=3: expected an object with HungarianMatcher's keys, got 3"),
    ('data.annotations=x.txt', '--set data.annotations=x.txt: expected an object (e.g. {"name": "x.txt"})'),
    ('model.hiden=3', "--set model.hiden=3: unknown key 'hiden' in model"),
    ('train.lr.x=1', '--set train.lr.x=1: train.lr is a number, not a section'),
])
def test_override_types_refused_when_parsed(override, message):
    with pytest.raises(DataError) as e: _mesm(override)
    assert message in str(e.value) and '\n' not in str(e.value)


def test_optional_fields_take_null_and_strings_keep_their_text():
    e = preset('prem', 'tvr', ['data.subtitles=null', 'name=2024'])
    assert e.data.subtitles is None and e.name == '2024'
    with pytest.raises(DataError, match=r"--set data.subtitles=\[1\]: expected a string or null"):
        preset('prem', 'tvr', ['data.subtitles=[1]'])


def test_a_split_is_added_by_dotted_keys():
    e = preset('mesm', 'qvhighlights_C+SF_C', ['data.annotations.test=test.jsonl', 'data.text_features.test=text/test.h5',
                                               'data.eval_splits=["val", "test"]'])
    assert e.data.annotations['test'] == 'test.jsonl' and e.data.text_features['test'] == 'text/test.h5'
    assert e.data.eval_splits == ['val', 'test']
    assert _mesm('data.annotations.val=7').data.annotations['val'] == '7'   # typed as the others


def test_cli_refuses_a_scalar_list_before_training(capsys, tmp_path):
    rc, out, err = run_cli(capsys, 'train', 'mesm', '--preset', 'charades_sta_C+SF_C', '--set', 'data.eval_splits=val',
                           '--run-dir', tmp_path / 'run')
    assert rc == 2 and 'error: --set data.eval_splits=val: expected a list (e.g. ["val"])' in err and 'Traceback' not in err
    assert not (tmp_path / 'run').exists()


def test_config_file_values_are_typed(tmp_path):
    d = config_to_dict(_mesm()); d['data']['eval_splits'] = 'test'
    p = tmp_path / 'config.json'; p.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"config.json: config key 'data.eval_splits': expected a list"): load_config(MESMExperiment, p)
    p.write_text('[1, 2]')
    with pytest.raises(DataError, match='config.json: expected a JSON object, got list'): load_config(MESMExperiment, p)


# -- 2. training settings -----------------------------------------------------------------------------------------
@pytest.mark.parametrize('kw, message', [(dict(epochs=0), 'epochs must be an integer >= 1, got 0'),
                                         (dict(epochs=-2), 'epochs must be an integer >= 1, got -2'),
                                         (dict(lr=-0.1), 'lr must be a finite number > 0, got -0.1'),
                                         (dict(schedule='linear'), "steps_per_epoch must be >= 1 with schedule='linear'")])
def test_trainer_config_refused_before_any_work(kw, message):
    with pytest.raises(ConfigError, match=message): TrainerConfig(**kw)


# -- 3. resume with other settings --------------------------------------------------------------------------------
def test_config_changes_lists_the_differing_leaves():
    a = config_to_dict(_mesm())
    b = config_to_dict(_mesm('train.lr=0.1', 'model.hidden=32', 'data.annotations.val=v.txt'))
    assert config_changes(a, b) == [('model.hidden', 256, 32), ('data.annotations.val', '<absent>', 'v.txt'), ('train.lr', 2e-4, 0.1)]
    assert config_changes(a, a) == []


def test_check_resume_refuses_changes_and_allows_the_safe_keys(tmp_path):
    exp = _mesm('train.lr=0.003')
    save_config(exp, tmp_path / 'config.json')
    check_resume(tmp_path, _mesm('train.lr=0.1'))      # no checkpoint yet: nothing to resume
    atomic_save({}, tmp_path / 'checkpoints' / 'state.pt')
    with pytest.raises(DataError, match=r'resume: .*config.json has train.lr=0.003, the command sets 0.1; start a new run folder'):
        check_resume(tmp_path, _mesm('train.lr=0.1'))
    with pytest.raises(DataError, match=r'model.hidden=256, the command sets 32'):
        check_resume(tmp_path, _mesm('train.lr=0.003', 'model.hidden=32'))
    assert set(RESUME_SAFE) == {'train.num_workers', 'train.eval_batch_size', 'train.epochs', 'eval.cache_bytes'}
    check_resume(tmp_path, _mesm('train.lr=0.003', 'train.epochs=400', 'train.num_workers=4', 'train.eval_batch_size=8'))


# -- 3b. config files written before keys were renamed ------------------------------------------------------------
OLD = Path(__file__).parent / 'fixtures' / 'old_configs'     # presets as the previous version saved them


def test_an_old_run_folder_loads_and_resumes_under_todays_keys(tmp_path):
    "train.max_es_cnt, train.select_on, dataset 'charades': the file loads as today's preset and resumes unchanged."
    shutil.copy(OLD / 'mesm_charades.json', tmp_path / 'config.json')
    old = json.loads((tmp_path / 'config.json').read_text())
    assert (old['train']['max_es_cnt'], old['train']['select_on'], old['data']['dataset']) == (200, 'val', 'charades')
    exp = load_config(MESMExperiment, tmp_path / 'config.json')
    assert exp == _mesm('train.num_workers=0')              # 0 loader workers: the default of its time
    assert (exp.train.patience, exp.train.select, exp.data.dataset) == (200, 'val', 'charades_sta')
    atomic_save({}, tmp_path / 'checkpoints' / 'state.pt')
    check_resume(tmp_path, _mesm())                                   # the same run: nothing changes
    with pytest.raises(DataError, match=r'config.json has train.patience=200, the command sets 5'):
        check_resume(tmp_path, _mesm('train.patience=5'))


def test_old_prem_keys_move_to_both_stages(tmp_path):
    d = json.loads((OLD / 'prem_didemo.json').read_text())
    d['train'].update(lr=0.003, select=False)
    p = tmp_path / 'config.json'; p.write_text(json.dumps(d))
    e = load_config(PREMExperiment, p)
    assert (e.train.retriever.lr, e.train.localizer.lr, e.train.select) == (0.003, 0.003, 'last')
    assert (e.train.retriever.epochs, e.train.localizer.batch_size, e.train.n_neg, e.model.max_len) == (100, 32, 2, 6)
    d['train']['localizer'] = dict(lr=0.1)                           # an old key and its new place disagree
    p.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r'train.lr=0.003 \(the old name of train.localizer.lr\) disagrees'):
        load_config(PREMExperiment, p)


@pytest.mark.parametrize('old, new', [('train.max_es_cnt=3', 'train.patience'), ('train.select_on=test', 'train.select')])
def test_old_keys_in_overrides_name_the_new_one(old, new):
    with pytest.raises(DataError, match=f"unknown key '{old[6:old.index('=')]}' in train, now {re.escape(new)}"):
        _mesm(old)


def test_old_dataset_and_preset_names_name_the_new_ones(capsys, tmp_path):
    with pytest.raises(DataError, match=r"got 'charades-cg' \(now spelled 'charades_cg'\)"):
        _mesm('data.dataset=charades-cg')
    rc, out, err = run_cli(capsys, 'train', 'mesm', '--preset', 'charades_C+SF_C', '--run-dir', tmp_path / 'r')
    assert rc == 2 and "unknown mesm preset 'charades_C+SF_C' (now 'charades_sta_C+SF_C')" in err
    assert not (tmp_path / 'r').exists()
    assert all(name.startswith(p.data.dataset) for ps in PRESETS.values() for name, p in ps.items())


def _task():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(32, 1, generator=g); Y = 3 * X
    loader = lambda ep: [(X[i:i + 8], Y[i:i + 8]) for i in range(0, 32, 8)]
    step = lambda m, b: (lambda l: (dict(mse=l), l))(((m(b[0]) - b[1]) ** 2).mean())
    def evaluate(m):
        with torch.no_grad(): return {'neg_mse': -float(((m(X) - Y) ** 2).mean())}
    return loader, step, evaluate


def test_trainer_refuses_a_changed_learning_rate_on_resume(tmp_path):
    loader, step, evaluate = _task()
    cfg = TrainerConfig(lr=0.003, epochs=2, stop_score='neg_mse', progress=False)
    Trainer(nn.Linear(1, 1), step, loader, evaluate, tmp_path, cfg).fit()
    bad = TrainerConfig(lr=0.1, epochs=3, stop_score='neg_mse', progress=False)
    with pytest.raises(DataError, match=r'state.pt was saved with lr=0.003, this run sets 0.1; start a new run folder'):
        Trainer(nn.Linear(1, 1), step, loader, evaluate, tmp_path, bad).fit()


def test_cli_resume_with_changed_model_leaves_config_json(capsys, synth, tmp_path):
    root, _ = synth
    run = tmp_path / 'run'
    rc, _, err = run_cli(capsys, 'train', 'mesm', '--synthetic', root, '--set', 'train.epochs=1', 'model.ss=false', '--run-dir', run, '--quiet')
    assert rc == 0, err
    before = (run / 'config.json').read_text()
    rc, _, err = run_cli(capsys, 'train', 'mesm', '--synthetic', root, '--set', 'train.epochs=1', 'model.ss=false', 'model.hidden=32',
                         '--run-dir', run, '--quiet')
    assert rc == 2 and 'model.hidden=64, the command sets 32' in err
    assert (run / 'config.json').read_text() == before


# -- 4. full disk, metrics log ------------------------------------------------------------------------------------
def test_atomic_save_removes_its_temporary_file_on_enospc(tmp_path, monkeypatch):
    atomic_save({'w': torch.ones(3)}, tmp_path / 'best.pt')
    def half(obj, f, *a, **k):
        with open(f, 'wb') as fh: fh.write(b'PK\x03\x04 half')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, 'save', half)
    with pytest.raises(OSError, match=r'best.pt: could not be written \(No space left on device\); the previous file is kept'):
        atomic_save({'w': torch.zeros(3)}, tmp_path / 'best.pt')
    monkeypatch.undo()
    assert sorted(f.name for f in tmp_path.iterdir()) == ['best.pt']
    assert torch.equal(safe_load(tmp_path / 'best.pt')['w'], torch.ones(3))


def test_save_config_removes_its_temporary_file(tmp_path, monkeypatch):
    from pathlib import Path
    save_config(_mesm(), tmp_path / 'config.json')
    real = Path.write_text
    def full(self, *a, **k):
        real(self, '{"na'); raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Path, 'write_text', full)
    with pytest.raises(OSError): save_config(_mesm('train.lr=1'), tmp_path / 'config.json')
    monkeypatch.undo()
    assert sorted(f.name for f in tmp_path.iterdir()) == ['config.json']
    assert load_config(MESMExperiment, tmp_path / 'config.json').train.lr == 2e-4


def test_failure_between_metrics_line_and_checkpoint_does_not_repeat_an_epoch(tmp_path, monkeypatch):
    import mesm_prem.training as T
    loader, step, evaluate = _task()
    cfg = TrainerConfig(lr=0.05, epochs=3, stop_score='neg_mse', progress=False)
    real = T.atomic_save
    def dies_at_epoch2(obj, path):
        if path.name == 'state.pt' and obj['trainer']['epoch'] == 2: raise OSError(errno.ENOSPC, 'No space left on device')
        return real(obj, path)
    monkeypatch.setattr(T, 'atomic_save', dies_at_epoch2)
    seed_everything(0)
    with pytest.raises(OSError): Trainer(nn.Linear(1, 1), step, loader, evaluate, tmp_path, cfg).fit()
    assert [r['epoch'] for r in read_metrics(tmp_path / 'metrics.jsonl')] == [1, 2]
    monkeypatch.undo()
    Trainer(nn.Linear(1, 1), step, loader, evaluate, tmp_path, cfg).fit()
    assert [r['epoch'] for r in read_metrics(tmp_path / 'metrics.jsonl')] == [1, 2, 3]


# -- 5. loading ---------------------------------------------------------------------------------------------------
def test_empty_and_truncated_checkpoints_are_one_line_errors(tmp_path, capsys):
    (tmp_path / 'checkpoints').mkdir()
    (tmp_path / 'checkpoints' / 'state.pt').write_bytes(b'')
    with pytest.raises(DataError, match=r'state.pt: not a mesm_prem checkpoint \(empty file\)'): safe_load(tmp_path / 'checkpoints' / 'state.pt')
    atomic_save({'w': torch.ones(100)}, tmp_path / 'best.pt')
    (tmp_path / 'cut.pt').write_bytes((tmp_path / 'best.pt').read_bytes()[:100])
    with pytest.raises(DataError, match=r'cut.pt: corrupt or not a checkpoint \(truncated') as e: safe_load(tmp_path / 'cut.pt')
    assert '\n' not in str(e.value)
    loader, step, evaluate = _task()     # a run folder whose state is empty: the trainer says so
    with pytest.raises(DataError, match='state.pt: not a mesm_prem checkpoint'):
        Trainer(nn.Linear(1, 1), step, loader, evaluate, tmp_path, TrainerConfig(stop_score='neg_mse', progress=False)).fit()


# -- 6. data-stats on bad feature files ---------------------------------------------------------------------------
@pytest.mark.parametrize('name, fix, message', [
    ('nan', lambda x: np.where(np.arange(x.shape[1]) == 1, np.nan, x).astype('f4'), 'non-finite value nan'),
    ('size', lambda x: x[:, :-1], 'feature size'),
    ('flat', lambda x: x[:, 0], 'expected a (T, D) array'),
    ('noclips', lambda x: x[:0], 'the video has no clips')])
def test_data_stats_checks_feature_files(capsys, synth, tmp_path, name, fix, message):
    root, _ = synth
    v = root / 'vmr'
    bad = tmp_path / f'{name}.h5'
    with h5py.File(v / 'clip_image.hdf5') as src, h5py.File(bad, 'w') as f:
        keys = sorted(src)
        for k in keys: f[k] = src[k][()] if k != keys[3] else fix(src[k][()])
    rc, out, err = run_cli(capsys, 'data-stats', v / 'charades_sta_train.txt', '--features', bad)
    assert rc == 2 and f"{name}.h5[{keys[3]!r}]: {message}" in err and 'Traceback' not in err, err
