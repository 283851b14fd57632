"""Every real annotation file parses, with the counts computed independently from the raw files
(line counts, distinct ids, and the official loaders' cleaning rules applied by hand).

The excerpts in tests/fixtures always run; the full files run only where they are available (`SHARED` of
conftest.py), and are skipped otherwise."""
import json

import pytest


from conftest import FIX, SHARED
from mesm_prem.records import DataError, read_charades_cg, read_charades_sta, read_qvhighlights, read_tacos, read_tvr
from mesm_prem.stores import MLMVocab

full = pytest.mark.skipif(not SHARED.is_dir(), reason='the full annotation files (conftest.SHARED) are not here')
pytestmark = pytest.mark.filterwarnings('ignore::mesm_prem.records.RepairWarning')


def test_excerpts():
    a = read_charades_sta(FIX / 'charades_sta_test_excerpt.txt', FIX / 'Charades_v1_test_excerpt.csv')
    assert (len(a), len(a.videos)) == (40, len({l.split()[0] for l in open(FIX / 'charades_sta_test_excerpt.txt')}))
    assert len(read_qvhighlights(FIX / 'qvhighlights_val_excerpt.jsonl')) == 30
    assert len(read_tvr(FIX / 'tvr_val_excerpt.jsonl', FIX / 'tvr_video2dur_idx_excerpt.json')) == 30
    assert len(read_tacos(FIX / 'tacos_test_excerpt.json')) == 20
    cg = read_charades_cg(FIX / 'charades_cg_novel_word_excerpt.json')
    assert (len(cg), len(cg.videos), cg.counts['clipped_end']) == (24, 20, 4)


@full
def test_charades_sta():
    d = SHARED / 'charades_sta'
    te = read_charades_sta(d / 'charades_sta_test.txt', d / 'Charades_v1_test.csv')
    assert (len(te), len(te.videos), dict(te.counts)) == (3720, 1334, {'clipped_end': 562})
    tr = read_charades_sta(d / 'charades_sta_train.txt', d / 'Charades_v1_train.csv')
    # 12,408 lines; 3 start after the video's end (dropped), 1 has start > end (swapped)
    assert (len(tr), len(tr.videos)) == (12405, 5336)
    assert dict(tr.counts) == {'dropped_start_after_duration': 3, 'swapped_start_end': 1, 'clipped_end': 1802}
    with pytest.raises(DataError, match=r'charades_sta_train.txt:\d+: '):
        read_charades_sta(d / 'charades_sta_train.txt', d / 'Charades_v1_train.csv', policy='strict')


@full
def test_tacos():
    t = read_tacos(SHARED / 'tacos' / 'test.json')
    assert (len(t), len(t.videos), dict(t.counts)) == (4001, 25, {'clipped_end': 5})
    assert max(q.duration for q in t) < 1403 and min(q.duration for q in t) > 50


@full
def test_qvhighlights():
    v = read_qvhighlights(SHARED / 'qvhighlights' / 'highlight_val_release.jsonl')
    assert (len(v), len(v.videos), len(v.by_video())) == (1550, 1519, 474)
    assert sum(len(q.windows) for q in v) == 2803 and not v.counts
    tr = read_qvhighlights(SHARED / 'qvhighlights' / 'highlight_train_release.jsonl')
    assert len(tr) == 7218


@full
def test_charades_cg():
    g = read_charades_cg(SHARED / 'charades_cg' / 'novel_word.json')
    assert (len(g), len(g.videos), dict(g.counts)) == (695, 580, {'clipped_end': 109})


@full
def test_tvr():
    v = read_tvr(SHARED / 'tvr' / 'tvr_val_release.jsonl', SHARED / 'tvr' / 'tvr_video2dur_idx.json')
    assert (len(v), len(v.videos)) == (10895, 2179)
    from collections import Counter
    assert Counter(q.extras['type'] for q in v) == {'v': 8097, 't': 964, 'vt': 1834}
    idx = {q.extras['vid_idx'] for q in v}
    assert (min(idx), max(idx), len(idx)) == (19614, 21792, 2179)
    d2 = json.load(open(SHARED / 'tvr' / 'tvr_video2dur_idx.json'))
    assert {k: len(x) for k, x in d2.items()} == dict(test_challenge=1090, test_public=1089, train=17435, val=2179)


@full
@pytest.mark.parametrize('path,vocab_size,kind,n_classes', [
    ('charades_sta/CLIP_tokenized_count.txt', 1111, 'clip', 1114),
    ('charades_sta/GloVe_tokenized_count.txt', 1111, 'glove', 1112),
    ('qvhighlights/CLIP_tokenized_count.txt', 5000, 'clip', 5003),
    ('tacos/GloVe_tokenized_count.txt', 1111, 'glove', 1112)])
def test_mlm_vocabularies(path, vocab_size, kind, n_classes):
    v = MLMVocab.from_counts(SHARED / path, vocab_size)
    assert (v.kind, v.n_classes, len(v.id2label)) == (kind, n_classes, vocab_size)
    col = 0 if kind == 'clip' else 1   # CLIP: "id count"; GloVe: "word id count"; class = rank in the file
    ids = [int(line.split(' ')[col]) for line in open(SHARED / path).read().splitlines()[:vocab_size]]
    assert v.id2label == {t: i for i, t in enumerate(ids)}
