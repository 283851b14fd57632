"""Bad input files, end to end (issue 14, "no silent wrong numbers"): each case gets one line naming the file and
the line, key or id (through the readers, the text store, the evaluators and `mesm_prem.cli.main`), or the right
answer; never a traceback and never a wrong number.

The notebooks 00_records, 01_stores, 08_metrics and 09_text test the same checks unit by unit."""
import builtins
import copy
import json
import os
import pickle
import warnings
from collections import Counter

import h5py
import numpy as np
import pytest

from conftest import FIX
from mesm_prem.cli import main
from mesm_prem.records import DataError, read_annotations, read_charades_cd, read_charades_cg, read_charades_sta, read_didemo, read_qvhighlights, read_tacos, read_tvr
from mesm_prem.stores import MLMVocab, TextStore, TokenFeatures, sentence_hash, write_text_store
from mesm_prem.metrics import eval_vcmr, eval_vmr, load_json, load_jsonl
from mesm_prem.text import read_glove_pkl


def write(p, text):
    p.write_text(text); return p


def cli(capsys, *argv):
    "(exit code, stderr) of `mesm-prem ARGV`, run in-process."
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


@pytest.fixture
def charades(tmp_path):
    "A Charades-STA test file of three sentences and its video table."
    ann = write(tmp_path / 'charades_sta_test.txt', 'V1 1.0 4.0##a person opens a door.\nV1 5.0 9.0##he sits.\nV2 0.0 3.0##she laughs.\n')
    csv = write(tmp_path / 'Charades_v1_test.csv', 'id,length\nV1,12.0\nV2,6.0\n')
    return ann, csv


# ---- 1. Charades-STA ids and the text store's sentences

def test_charades_blank_line_inside_is_an_error(charades, capsys):
    ann, csv = charades
    lines = ann.read_text().splitlines(keepends=True)
    write(ann, lines[0] + '\n' + ''.join(lines[1:]))
    with pytest.raises(DataError, match=r'charades_sta_test\.txt:2: blank line inside the file'):
        read_charades_sta(ann, csv)
    rc, err = cli(capsys, 'data-stats', ann, '--durations', csv)
    assert rc == 2 and 'charades_sta_test.txt:2: blank line inside the file' in err and 'Traceback' not in err


def test_charades_ids_are_the_official_line_numbers(charades):
    "Ids are the 0-based line numbers (the keys of the official text features); trailing blank lines change none."
    ann, csv = charades
    want = [(q.qid, q.sentence) for q in read_charades_sta(ann, csv)]
    assert want == [(0, 'a person opens a door.'), (1, 'he sits.'), (2, 'she laughs.')]
    write(ann, ann.read_text() + '\n\n')
    assert [(q.qid, q.sentence) for q in read_charades_sta(ann, csv)] == want


def test_real_charades_files_keep_their_ids():
    "The fixture excerpt of the official test file: query i is line i + 1 of the file."
    ann = read_charades_sta(FIX / 'charades_sta_test_excerpt.txt', FIX / 'Charades_v1_test_excerpt.csv')
    lines = (FIX / 'charades_sta_test_excerpt.txt').read_text().splitlines()
    assert all(lines[q.qid].split('##', 1)[1].strip() == q.sentence for q in ann)


def test_text_store_checked_against_its_sentences(charades, tmp_path):
    """A store made from one version of the file, read with another whose line 2 was removed: every later id now
    names another sentence; `check_sentences` stops at the first one (the call the datasets make)."""
    ann_p, csv = charades
    ann = read_charades_sta(ann_p, csv)
    rng = np.random.default_rng(0)
    items = {q.qid: TokenFeatures(rng.normal(size=(4, 8)), np.array([49406, 1, 2, 49407])) for q in ann}
    store = TextStore(write_text_store(tmp_path / 'text.h5', items, tokenizer='clip', sentences=ann))
    assert store.check_sentences(ann) == 3
    lines = ann_p.read_text().splitlines(keepends=True)
    write(ann_p, lines[0] + lines[2] + 'V2 1.0 2.0##a new sentence.\n')   # line 2 removed, one appended
    moved = read_charades_sta(ann_p, csv)
    with pytest.raises(DataError, match=r"text\.h5\['1'\]: the features are of another sentence than query 1 of .*charades_sta_test\.txt"):
        store.check_sentences(moved)


def test_text_store_without_hashes_still_loads(tmp_path):
    "Official and older stores have no sentence record: they load, and the check passes without checking."
    with h5py.File(tmp_path / 'official.h5', 'w') as f: f['7'] = np.ones((3, 4), 'f4')
    st = TextStore(tmp_path / 'official.h5')
    assert st[7].feat.shape == (3, 4) and st.sentence_hashes() == {}
    ann = read_tvr(write(tmp_path / 'tvr_val.jsonl', json.dumps(dict(desc_id=7, desc='x', vid_name='a', duration=5, ts=[1, 2])) + '\n'))
    assert st.check_sentences(ann) == 0


def test_extract_text_records_and_refreshes_sentences(charades, tmp_path):
    "`extract_text` records each sentence; an edited sentence is encoded again on the next call."
    from mesm_prem.text import GloVeTextFeatures, GloVeVocab, extract_text
    ann = read_charades_sta(*charades)
    vocab = GloVeVocab(['a', 'person', 'opens', 'door', 'he', 'sits', 'she', 'laughs', 'eats'])
    enc = GloVeTextFeatures(vocab, np.random.default_rng(0).normal(size=(len(vocab), 6)).astype('f4'), 8, 'closed-class')
    p = extract_text(ann, tmp_path / 'text.h5', enc, progress=False)
    assert TextStore(p).sentence_hashes() == {str(q.qid): sentence_hash(q.sentence) for q in ann}
    edited = copy.deepcopy(ann); edited.queries[1].sentence = 'he eats.'
    with pytest.raises(DataError, match=r"text\.h5\['1'\]: the features are of another sentence"):
        TextStore(p).check_sentences(edited)
    extract_text(edited, p, enc, progress=False)
    st = TextStore(p)
    assert st.check_sentences(edited) == 3
    assert st[1].ids.tolist() == [vocab['he'], vocab['eats'], vocab.UNK]   # '.' is not in this vocabulary


# ---- 2. windows that cannot be repaired

BAD_WINDOWS = [
    ('charades_sta_test.txt', 'V1 1 4##a\nV1 -5 -1##b\n', r'charades_sta_test\.txt:2: window \[-5, -1\] leaves no moment'),
    ('novel_word.json', json.dumps({'V1': dict(duration=9, timestamps=[[-5, -1]], sentences=['a'])}),
     r"novel_word\.json\['V1'\]\.timestamps\[0\]: window \[-5, -1\]"),
    ('charades_test_ood.json', json.dumps({'V1': dict(video_duration=9, timestamps=[[9, 12]], sentences=['a'])}),
     r"charades_test_ood\.json\['V1'\]\.timestamps\[0\]: window \[9, 12\]"),
    ('highlight_val_release.jsonl', json.dumps(dict(qid=1, query='q', vid='y_0_150', duration=150, relevant_windows=[[-4, 0]],
                                                    relevant_clip_ids=[], saliency_scores=[])) + '\n',
     r'highlight_val_release\.jsonl:1: relevant_windows\[0\]: window \[-4, 0\]'),
    ('tvr_val_release.jsonl', json.dumps(dict(desc_id=1, desc='x', vid_name='a', duration=5, ts=[2, 2])) + '\n',
     r'tvr_val_release\.jsonl:1: window \[2, 2\]'),
    ('didemo_val.jsonl', json.dumps(dict(desc_id=1, desc='x', vid_name='a', duration=30, ts=[[0, 5], [-9, -4]])) + '\n',
     r'didemo_val\.jsonl:1: ts\[1\]: window \[-9, -4\]'),
]


@pytest.mark.parametrize('name,text,msg', BAD_WINDOWS)
def test_unrepairable_window_is_an_error(tmp_path, capsys, name, text, msg):
    p = write(tmp_path / name, text)
    write(tmp_path / 'Charades_v1_test.csv', 'id,length\nV1,30\n')
    with pytest.raises(DataError, match=msg):
        read_annotations(p, durations=tmp_path / 'Charades_v1_test.csv') if name.endswith('.txt') else read_annotations(p)
    rc, err = cli(capsys, 'data-stats', p)
    assert rc == 2 and err.count('\n') == 1 and 'leaves no moment inside the video' in err


def test_tacos_unrepairable_window(tmp_path):
    p = write(tmp_path / 'test.json', json.dumps({'s1.avi': dict(fps=10, num_frames=90, timestamps=[[-50, -10]], sentences=['a'])}))
    with pytest.raises(DataError, match=r"test\.json\['s1\.avi'\]\.timestamps\[0\]: window \[-5\.0, -1\.0\]"):
        read_tacos(p)


def test_small_repairs_stay(tmp_path):
    "An end a little past the video is clipped, a window partly before 0 is clamped, as the official loaders do."
    p = write(tmp_path / 'charades_sta_test.txt', 'V1 1 31.5##a\nV1 -1 4##b\n')
    with pytest.warns(UserWarning, match='clipped_end=1, clipped_start=1'):
        ann = read_charades_sta(p, {'V1': 30.0})
    assert [q.window for q in ann] == [[1.0, 30.0], [0.0, 4.0]]


# ---- 3. one line instead of a traceback

@pytest.mark.parametrize('name,data,msg', [
    ('charades_sta_test.txt', b'V1 1 4##a\nV1 2 5##caf\xe9\n', r'charades_sta_test\.txt:2: not UTF-8 text \(byte 0xe9'),
    ('tvr_val_release.jsonl', b'{"desc_id": 1, "desc": "x", "vid_name": "a", "duration": 5, "ts": [1, 2]}\n{"desc": "\xff"}\n',
     r'tvr_val_release\.jsonl:2: not UTF-8 text'),
    ('novel_word.json', b'{"V1": {"duration": 9,\n"timestamps": [[1, 2]],\n"sentences": ["\x80"]}}', r'novel_word\.json:3: not UTF-8 text'),
])
def test_non_utf8_names_the_line(tmp_path, capsys, name, data, msg):
    p = tmp_path / name; p.write_bytes(data)
    write(tmp_path / 'Charades_v1_test.csv', 'id,length\nV1,30\n')
    with pytest.raises(DataError, match=msg):
        read_annotations(p, durations={'V1': 30.0}) if name.endswith('.txt') else read_annotations(p)
    rc, err = cli(capsys, 'data-stats', p)
    assert rc == 2 and 'not UTF-8 text' in err and 'Traceback' not in err


def test_text_features_stored_as_text(tmp_path):
    with h5py.File(tmp_path / 'q.h5', 'w') as f:
        f['1'] = np.array([[b'0.1', b'0.2']]); f.create_group('2')['feat'] = np.array(['a', 'b'], dtype=h5py.string_dtype())
    with pytest.raises(DataError, match=r"q\.h5\['1'\]: token features have dtype \|S3 \(text\)"):
        TextStore(tmp_path / 'q.h5')[1]
    with pytest.raises(DataError, match=r"q\.h5\['2'\]: token features have dtype object \(text\)"):
        TextStore(tmp_path / 'q.h5')[2]


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'^vocabulary file not found: .*CLIP_tokenized_count\.txt$'):
        MLMVocab.from_counts(tmp_path / 'CLIP_tokenized_count.txt', 10)


# ---- 4. evaluators

@pytest.fixture
def vmr(tmp_path):
    gt = [dict(qid=1, relevant_windows=[[0, 10]], duration=150), dict(qid=2, relevant_windows=[[20, 40]], duration=150)]
    sub = [dict(qid=1, pred_relevant_windows=[[0, 10, 0.9]]), dict(qid=2, pred_relevant_windows=[[20, 30, 0.9], [20, 40, 0.5]])]
    return gt, sub


def lines(p, rows):
    return write(p, ''.join(json.dumps(r) + '\n' for r in rows))


def test_vmr_string_and_int_ids_are_one_id(tmp_path, capsys, vmr):
    gt, sub = vmr
    want = eval_vmr(sub, gt)
    assert want['brief']['MR-full-R1@0.5'] == 100.0 and want['full']['MR-R1']['miou'] == 75.0
    for s, g in (([dict(d, qid=str(d['qid'])) for d in sub], gt), (sub, [dict(d, qid=str(d['qid'])) for d in gt])):
        assert eval_vmr(s, g) == want
        rc = main(['evaluate', 'vmr', '--submission', str(lines(tmp_path / 's.jsonl', s)), '--gt', str(lines(tmp_path / 'g.jsonl', g))])
        out = json.loads(capsys.readouterr().out)
        assert rc == 0 and out['brief'] == json.loads(json.dumps(want['brief']))


def test_vcmr_string_and_int_ids_are_one_id():
    gt = [dict(desc_id=100977, vid_name='A', ts=[0, 10], type='v')]
    sub = lambda q: dict(video2idx={'A': 0, 'B': 1}, VCMR=[dict(desc_id=q, predictions=[[1, 0, 10, 1.], [0, 0, 10, .5]])])
    want = eval_vcmr(sub(100977), gt)
    assert (want['VCMR']['0.7-r1'], want['VCMR']['0.7-r5']) == (0.0, 100.0)
    same = lambda r: json.dumps(r) == json.dumps(want)   # (the empty 't' and 'vt' types give NaN, which is != itself)
    assert same(eval_vcmr(sub('100977'), gt)) and same(eval_vcmr(sub(100977), [dict(gt[0], desc_id='100977')]))
    assert not same(eval_vcmr(sub(100977), [dict(gt[0], ts=[20, 30])]))


@pytest.mark.parametrize('case,msg', [
    ('gt_dup', r'g\.jsonl:3: ground-truth qid 2 appears twice \(first at .*g\.jsonl:2\)'),
    ('gt_negative', r'g\.jsonl:2: ground-truth query 2: window \[-5, -1\] is empty or negative'),
    ('sub_dup', r"s\.jsonl:3: submission query '2' appears twice \(first at .*s\.jsonl:2\)"),
    ('sub_nan', r's\.jsonl:2: query 2: a predicted window must be \[start, end, score\] with finite numbers'),
    ('sub_empty', r's\.jsonl:2: query 2: empty pred_relevant_windows'),
    ('sub_array', r's\.jsonl:1: a JSON array, expected JSON lines'),
])
def test_vmr_bad_files(tmp_path, capsys, vmr, case, msg):
    gt, sub = copy.deepcopy(vmr)
    if case == 'gt_dup': gt.append(dict(qid=2, relevant_windows=[[1, 2]]))
    if case == 'gt_negative': gt[1]['relevant_windows'] = [[-5, -1]]
    if case == 'sub_dup': sub.append(dict(sub[1], qid='2'))
    if case == 'sub_nan': sub[1]['pred_relevant_windows'][0][2] = float('nan')
    if case == 'sub_empty': sub[1]['pred_relevant_windows'] = []
    g = lines(tmp_path / 'g.jsonl', gt)
    s = write(tmp_path / 's.jsonl', json.dumps(sub, indent=1)) if case == 'sub_array' else lines(tmp_path / 's.jsonl', sub)
    with pytest.raises(DataError, match=msg):
        eval_vmr(load_jsonl(s), load_jsonl(g))
    rc, err = cli(capsys, 'evaluate', 'vmr', '--submission', s, '--gt', g)
    assert rc == 2 and err.count('\n') == 1 and 'Traceback' not in err


@pytest.mark.parametrize('case,msg', [
    ('dup', r"s\.json: VCMR\[1\]: desc_id 1 appears twice \(first at VCMR\[0\]\)"),
    ('empty', r"s\.json: VCMR\[0\]: desc_id 1: empty predictions"),
    ('inf', r"s\.json: VCMR\[0\]: desc_id 1: a prediction must be \[video_idx, start, end, score\] with finite numbers"),
    ('gt_dup', r"g\.jsonl:2: ground-truth desc_id 1 appears twice"),
    ('gt_bad', r"g\.jsonl:1: ground-truth query 1: window \[-5, -1\] is empty or negative"),
])
def test_vcmr_bad_files(tmp_path, capsys, case, msg):
    gt = [dict(desc_id=1, vid_name='A', ts=[0, 10], type='v')]
    entries = [dict(desc_id=1, predictions=[[0, 0, 10, 1.]])]
    if case == 'dup': entries.append(dict(desc_id=1, predictions=[[1, 0, 10, 1.]]))   # the official evaluator keeps the last
    if case == 'empty': entries[0]['predictions'] = []
    if case == 'inf': entries[0]['predictions'][0][3] = float('inf')
    if case == 'gt_dup': gt.append(dict(gt[0]))
    if case == 'gt_bad': gt[0]['ts'] = [-5, -1]
    s = write(tmp_path / 's.json', json.dumps(dict(video2idx={'A': 0, 'B': 1}, VCMR=entries)))
    g = lines(tmp_path / 'g.jsonl', gt)
    with pytest.raises(DataError, match=msg):
        eval_vcmr(load_json(s), load_jsonl(g))
    rc, err = cli(capsys, 'evaluate', 'vcmr', '--submission', s, '--gt', g)
    assert rc == 2 and err.count('\n') == 1 and 'Traceback' not in err


def test_vcmr_empty_counted_as_miss():
    gt = [dict(desc_id=1, vid_name='A', ts=[0, 10]), dict(desc_id=2, vid_name='A', ts=[0, 10])]
    sub = dict(video2idx={'A': 0}, VCMR=[dict(desc_id=1, predictions=[[0, 0, 10, 1.]]), dict(desc_id=2, predictions=[])])
    r = eval_vcmr(sub, gt, missing='miss')
    assert r['VCMR']['0.7-r1'] == 50.0 and r['checks'] == {'queries_missing_counted_as_miss': {'VCMR': 1}}


def test_golden_vmr_unchanged():
    "Moment-DETR's sample predictions still give exactly the official evaluator's numbers (through the file readers)."
    G = FIX / 'qvh_golden'
    ours = eval_vmr(load_jsonl(G / 'sample_val_preds.jsonl.gz'), load_jsonl(G / 'highlight_val_release.jsonl.gz'), official=True)
    assert json.loads(json.dumps(ours)) == load_json(G / 'sample_val_preds_metrics_raw.json')


# ---- 5. glove.pkl cannot run code

class _Payload:
    def __init__(self, call): self.call = call
    def __reduce__(self): return self.call


@pytest.mark.parametrize('how', ['open', 'system', 'eval'])
def test_crafted_glove_pkl_is_refused(tmp_path, capsys, how):
    target = tmp_path / 'created_by_the_pickle'
    call = {'open': (builtins.open, (str(target), 'w')), 'system': (os.system, (f'touch {target}',)),
            'eval': (builtins.eval, (f"open({str(target)!r}, 'w')",))}[how]
    p = tmp_path / 'glove.pkl'
    p.write_bytes(pickle.dumps(dict(counter=Counter(person=3), w2id={'person': 0}, id2vec=[_Payload(call)])))
    with pytest.raises(DataError, match=r'glove\.pkl: refused to load the global (io\.open|posix\.system|builtins\.eval)'):
        read_glove_pkl(p)
    assert not target.exists()
    rc, err = cli(capsys, 'build-vocab', '--preset', 'charades_sta_VGG_GloVe', '--glove-pkl', p, '--out', tmp_path / 'counts.txt')
    assert rc == 2 and 'refused to load the global' in err and not target.exists() and not (tmp_path / 'counts.txt').exists()


def test_real_glove_pkl_layout_loads(tmp_path, capsys):
    "CPL's layout (Counter, w2id, id2vec as numpy vectors) loads with the restricted unpickler, through the CLI too."
    p = tmp_path / 'glove.pkl'
    p.write_bytes(pickle.dumps(dict(counter=Counter(person=5, door=2, zebra=1), w2id={'person': 0, 'door': 1},
                                    id2vec=[np.ones(300, np.float32), np.zeros(300, np.float32)]), protocol=2))
    g = read_glove_pkl(p)
    assert g['w2id'] == {'person': 0, 'door': 1} and np.asarray(g['id2vec']).shape == (2, 300)
    rc, _ = cli(capsys, 'build-vocab', '--preset', 'charades_sta_VGG_GloVe', '--glove-pkl', p, '--out', tmp_path / 'counts.txt')
    assert rc == 0 and (tmp_path / 'counts.txt').read_text() == 'person 0 5\ndoor 1 2\n'
