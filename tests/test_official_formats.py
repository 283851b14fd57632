"""`mesm-prem train mesm --config` on data laid out exactly as the official presets expect.

Each case takes a real annotation excerpt (tests/fixtures), writes random clip features into HDF5 files named
as the preset names them (keys: the video ids of the annotation file), a text store per split (keys: the query
ids our readers give, `feat`/`ids`/`weights` groups), copies an MLM vocabulary head, and trains one epoch from
the preset with only the root, the feature sizes and the schedule overridden.
"""
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mesm_prem.config import save_config
from mesm_prem.stores import TokenFeatures, write_text_store
from mesm_prem.records import read_tacos, read_qvhighlights, read_charades_cg
from mesm_prem.experiments import preset

FIX = Path(__file__).parent / 'fixtures'
DV, DT = 16, 8          # small feature sizes: the layout is what is under test, not the scale


def _clips(dataset, q):
    if dataset == 'qvhighlights': return int(round(q.duration / 2))
    if dataset == 'tacos': return 40
    return max(4, int(q.duration))


def _write(root, exp, readers, vocab_file, rng):
    d = exp.data
    queries = {s: readers[s](root / d.annotations[s]) for s in d.annotations}
    lengths = {q.vid: _clips(d.dataset, q) for ann in queries.values() for q in ann}
    for name in d.video_features:
        with h5py.File(root / name, 'w') as f:
            for vid, n in lengths.items(): f[vid] = rng.standard_normal((n, DV // len(d.video_features))).astype(np.float32)
    vocab_ids = [int(l.split()[-2]) for l in (FIX / vocab_file).read_text().splitlines()]
    (root / 'text').mkdir()
    for split, ann in queries.items():
        items = {}
        for q in ann:
            w = int(rng.integers(4, d.max_words_l + 1))
            items[q.qid] = TokenFeatures(rng.standard_normal((w, DT)).astype(np.float32),
                                         rng.choice(vocab_ids, w).astype(np.int64), np.r_[0, np.full(w - 2, 2), 0])
        write_text_store(root / d.text_features[split], items)
    shutil.copy(FIX / vocab_file, root / d.vocab_file)
    return queries


CASES = {
    'tacos_C3D_GloVe': (dict(train='tacos_test_excerpt.json', test='tacos_test_excerpt.json'), read_tacos, 'GloVe_tokenized_count_charades_head.txt', 40),
    'qvhighlights_C+SF_C': (dict(train='qvhighlights_val_excerpt.jsonl', val='qvhighlights_val_excerpt.jsonl'), read_qvhighlights,
                            'CLIP_tokenized_count_charades_head.txt', 40),
    'charades_cg_C+SF_C': (dict(train='charades_cg_novel_word_excerpt.json', novel_composition='charades_cg_novel_word_excerpt.json',
                                novel_word='charades_cg_novel_word_excerpt.json', test_trivial='charades_cg_novel_word_excerpt.json'),
                           read_charades_cg, 'CLIP_tokenized_count_charades_head.txt', 40),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_train_one_epoch_in_the_official_layout(name, tmp_path):
    files, reader, vocab_file, vocab_size = CASES[name]
    root = tmp_path / 'data'; root.mkdir()
    exp = preset('mesm', name)
    for split, src in files.items(): shutil.copy(FIX / src, root / exp.data.annotations[split])
    kind_extra = 1 if 'GloVe' in vocab_file else 3
    exp = dataclasses.replace(exp,
        model=dataclasses.replace(exp.model, vid_dim=DV + 2, txt_dim=DT, hidden=32, n_heads=4, d_ff=64, n_classes=vocab_size + kind_extra),
        # the fixture has two videos a split: too few to hold some out of train, so these runs select on test
        data=dataclasses.replace(exp.data, root=str(root), vocab_size=vocab_size,
                                 val_split='test' if exp.data.val_split == 'heldout' else exp.data.val_split),
        train=dataclasses.replace(exp.train, epochs=1, batch_size=2, eval_batch_size=4))
    queries = _write(root, exp, {s: reader for s in files}, vocab_file, np.random.default_rng(0))
    save_config(exp, tmp_path / 'config.json')
    r = subprocess.run([sys.executable, '-m', 'mesm_prem.cli', 'train', 'mesm', '--config', tmp_path / 'config.json',
                        '--run-dir', tmp_path / 'run', '--quiet', '--device', 'cpu'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert sorted(res) == sorted(set([exp.data.val_split] + exp.data.eval_splits))
    for split in res:
        assert 0 <= res[split]['MR-full-miou'] <= 100, res[split]
        sub = [json.loads(l) for l in (tmp_path / 'run' / 'predictions' / f'{split}_submission.jsonl').read_text().splitlines()]
        assert len(sub) == len(queries[split]) and {s['qid'] for s in sub} == {q.qid for q in queries[split]}
        dur = {q.qid: q.duration for q in queries[split]}
        for s in sub:
            assert 1 <= len(s['pred_relevant_windows']) <= exp.eval.max_after_nms
            for st, en, sc in s['pred_relevant_windows']:
                assert 0 <= st <= en <= min(dur[s['qid']], exp.eval.max_ts_val) + 1e-3 and 0 <= sc <= 1
    saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert saved['data']['dataset'] == exp.data.dataset and saved['model']['vid_dim'] == DV + 2
