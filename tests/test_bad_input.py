"""Bad input, end to end: each case gets an error naming the file and the line or key, never a wrong number.

The notebooks test the same checks unit by unit; here they are reached the way a user reaches them,
through a dataset or a reader on files written to disk."""
import json
import warnings

import h5py
import numpy as np
import pytest
from mesm_prem.records import DataError, RepairWarning, read_annotations, read_charades_sta, read_qvhighlights, read_tacos, read_tvr
from mesm_prem.stores import H5Store, NpyDirStore, TextStore, TokenFeatures, VideoFeatures, write_text_store
from mesm_prem.datasets import VCMRDataset, VMRDataset, collate_vmr





def write(p, text):
    p.write_text(text); return p


def durations_csv(p, **d):
    return write(p, 'id,length\n' + ''.join(f'{k},{v}\n' for k, v in d.items()))


@pytest.fixture
def vmr_files(tmp_path):
    "A minimal valid Charades-STA dataset on disk (2 videos, 3 sentences)."
    ann = write(tmp_path / 'charades_sta_test.txt', 'V1 1.0 4.0##a person opens a door.\nV1 5.0 9.0##he sits.\nV2 0.0 3.0##she laughs.\n')
    csv = durations_csv(tmp_path / 'Charades_v1_test.csv', V1=12.0, V2=6.0)
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / 'clip.h5', 'w') as f:
        f['V1'] = rng.normal(size=(12, 8)).astype('f4'); f['V2'] = rng.normal(size=(6, 8)).astype('f4')
    write_text_store(tmp_path / 'text.h5', {i: TokenFeatures(rng.normal(size=(5, 4)), np.array([49406, 1, 2, 3, 49407]))
                                            for i in range(3)}, tokenizer='clip', max_words=16)
    return tmp_path, ann, csv


def dataset(root, ann, csv, features='clip.h5', **kw):
    a = read_charades_sta(ann, csv)
    return VMRDataset(a, VideoFeatures([H5Store(root / features)], **kw), TextStore(root / 'text.h5'))


def test_valid_files_load(vmr_files):
    ds = dataset(*vmr_files)
    assert len(ds) == 2 and collate_vmr([ds[0], ds[1]]).videos.shape == (2, 12, 10)


def test_missing_file(vmr_files):
    root, ann, csv = vmr_files
    with pytest.raises(FileNotFoundError, match='feature file not found: .*nope.h5'):
        dataset(root, ann, csv, features='nope.h5')
    with pytest.raises(FileNotFoundError, match='annotation file not found'):
        read_charades_sta(root / 'nope.txt', csv)


def test_malformed_line(vmr_files):
    root, _, csv = vmr_files
    ann = write(root / 'a.txt', 'V1 1.0 4.0##ok.\nV1 1.0 4.0 person opens the door\n')
    with pytest.raises(DataError, match=r"a.txt:2: expected 'VID START END##sentence'"):
        read_charades_sta(ann, csv)


def test_missing_feature_key(vmr_files):
    root, ann, csv = vmr_files
    with h5py.File(root / 'partial.h5', 'w') as f: f['V1'] = np.ones((12, 8), 'f4')
    with pytest.raises(DataError, match=r"1 videos of .*charades_sta_test.txt have no features in .*partial.h5: \['V2'\]"):
        dataset(root, ann, csv, features='partial.h5')
    with pytest.raises(KeyError, match=r"partial.h5\['V2'\]: no such video"):
        H5Store(root / 'partial.h5')['V2']


def test_missing_text_key(vmr_files):
    root, ann, csv = vmr_files
    write_text_store(root / 'text.h5', {0: TokenFeatures(np.ones((3, 4)))})
    with pytest.raises(DataError, match=r'2 queries of .* have no text features in .*text.h5: \[1, 2\]'):
        dataset(root, ann, csv)


def test_feature_size_differs(vmr_files):
    root, ann, csv = vmr_files
    with h5py.File(root / 'mixed.h5', 'w') as f:
        f['V1'] = np.ones((12, 8), 'f4'); f['V2'] = np.ones((6, 9), 'f4')
    ds = dataset(root, ann, csv, features='mixed.h5')
    ds[0]
    with pytest.raises(DataError, match=r"mixed.h5\['V2'\]: feature size 9, expected 8"):
        ds[1]
    with pytest.raises(DataError, match=r'video features are 10-d \(clip 8 \+ TEF 2\), but model.vid_dim is 2818: set model.vid_dim=10'):
        VideoFeatures([H5Store(root / 'clip.h5')], expected_dim=2818)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_features(vmr_files, bad):
    root, ann, csv = vmr_files
    x = np.ones((6, 8), 'f4'); x[4, 3] = bad
    with h5py.File(root / 'clip.h5', 'a') as f: del f['V2']; f['V2'] = x
    ds = dataset(root, ann, csv)
    with pytest.raises(DataError, match=rf"clip.h5\['V2'\]: non-finite value {bad} at clip 4, dim 3"):
        ds[1]


def test_non_finite_text(vmr_files):
    root, ann, csv = vmr_files
    write_text_store(root / 'text.h5', {i: TokenFeatures(np.full((3, 4), np.nan if i == 2 else 1.)) for i in range(3)})
    ds = dataset(root, ann, csv)
    with pytest.raises(DataError, match=r"text.h5\['2'\]: non-finite token features"):
        ds[1]


def test_start_after_end(tmp_path):
    csv = durations_csv(tmp_path / 'd.csv', V1=12.0)
    ann = write(tmp_path / 'a.txt', 'V1 1.0 4.0##ok.\nV1 6.0 2.0##reversed.\n')
    with pytest.raises(DataError, match=r'a.txt:2: start 6.0 is after end 2.0'):
        read_charades_sta(ann, csv, policy='strict')
    with pytest.warns(RepairWarning, match=r'swapped_start_end=1'):
        a = read_charades_sta(ann, csv)
    assert a[1].window == [2.0, 6.0] and a.counts == {'swapped_start_end': 1}
    tacos = write(tmp_path / 't.json', json.dumps({'s1.avi': dict(timestamps=[[10, 50], [90, 30]], sentences=['a', 'b'], fps=30, num_frames=300)}))
    with pytest.warns(RepairWarning):
        t = read_tacos(tacos)
    assert len(t) == 1 and t.counts == {'dropped_start_after_end': 1}   # TACoS drops it, as the official loader


def test_window_outside_the_video(tmp_path):
    csv = durations_csv(tmp_path / 'd.csv', V1=12.0)
    ann = write(tmp_path / 'a.txt', 'V1 1.0 14.0##past the end.\nV1 13.0 15.0##starts after the end.\nV1 -1.0 3.0##negative start.\n')
    with pytest.warns(RepairWarning):
        a = read_charades_sta(ann, csv)
    assert [q.window for q in a] == [[1.0, 12.0], [0.0, 3.0]]
    assert a.counts == {'clipped_end': 1, 'dropped_start_after_duration': 1, 'clipped_start': 1}
    for line, msg in [(1, "end 14.0 is after the video's end"), (2, "start 13.0 is after the video's end")]:
        bad = write(tmp_path / f'b{line}.txt', ann.read_text().splitlines()[line - 1] + '\n')
        with pytest.raises(DataError, match=rf'b{line}.txt:1: {msg}'):
            read_charades_sta(bad, csv, policy='strict')
    q = write(tmp_path / 'highlight_val_release.jsonl', json.dumps(dict(qid=1, query='x', vid='yt_0.0_150.0', duration=150,
              relevant_windows=[[140, 152]], relevant_clip_ids=[70], saliency_scores=[[1, 1, 1]])) + '\n')
    with pytest.warns(RepairWarning):
        assert read_qvhighlights(q)[0].windows == [[140.0, 150.0]]


@pytest.mark.parametrize('fmt,text,msg', [
    ('charades_cg', json.dumps({'V1': dict(duration=0.0, timestamps=[[0, 1]], sentences=['a'])}), r"\['V1'\]: duration must be > 0"),
    ('tacos', json.dumps({'s1.avi': dict(timestamps=[[0, 1]], sentences=['a'], fps=30, num_frames=0)}), r"\['s1.avi'\]: duration must be > 0"),
    ('tvr', json.dumps(dict(vid_name='v', duration=0, ts=[0, 1], desc='a', desc_id=1, type='v')), r'a.jsonl:1: duration must be > 0'),
])
def test_zero_duration(tmp_path, fmt, text, msg):
    p = write(tmp_path / ('a.jsonl' if fmt == 'tvr' else 'a.json'), text + '\n')
    with pytest.raises(DataError, match=msg):
        read_annotations(p, fmt)


@pytest.mark.parametrize('fmt,text,msg', [
    ('tvr', json.dumps(dict(vid_name='v', duration=9, ts=[0, 1], desc='  ', desc_id=1)), r'a.jsonl:1: empty sentence'),
    ('qvhighlights', json.dumps(dict(qid=1, query='', vid='y_0_150', duration=150)), r'a.jsonl:1: empty sentence'),
    ('charades_cg', json.dumps({'V1': dict(duration=9.0, timestamps=[[0, 1]], sentences=[''])}), r"\['V1'\].sentences\[0\]: empty sentence"),
])
def test_empty_sentence(tmp_path, fmt, text, msg):
    p = write(tmp_path / ('a.jsonl' if fmt != 'charades_cg' else 'a.json'), text + '\n')
    with pytest.raises(DataError, match=msg):
        read_annotations(p, fmt)


def test_truncated_hdf5(vmr_files):
    root, ann, csv = vmr_files
    data = (root / 'clip.h5').read_bytes()
    write_bytes = (root / 'trunc.h5').write_bytes
    write_bytes(data[:len(data) // 3])
    with pytest.raises(DataError, match=r'trunc.h5: cannot open as HDF5 \(truncated or corrupt\?\)'):
        dataset(root, ann, csv, features='trunc.h5')
    with pytest.raises(DataError, match=r'text.h5: cannot open as HDF5'):
        (root / 'text.h5').write_bytes(b'\x89HDF\r\n\x1a\n' + b'\0' * 64); TextStore(root / 'text.h5')


def test_corrupt_npz(tmp_path):
    d = tmp_path / 'feats'; d.mkdir()
    (d / 'v1.npz').write_bytes(b'PK\x03\x04 not really a zip')
    with pytest.raises(DataError, match=r'v1.npz: cannot read'):
        NpyDirStore(d)['v1']
    np.savez(d / 'v2.npz', feats=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"v2.npz: no array 'features'"):
        NpyDirStore(d)['v2']


def test_duplicate_query_ids(tmp_path):
    p = write(tmp_path / 'tvr_x.jsonl', ''.join(json.dumps(dict(vid_name='v', duration=9, ts=[0, 1], desc='a', desc_id=7)) + '\n' for _ in range(2)))
    with pytest.raises(DataError, match=r'tvr_x.jsonl: duplicate query id 7'):
        read_tvr(p)


def test_window_after_the_kept_clips(tmp_path):
    "A TVR window that starts after the clips kept (videos cut at max_len) is clamped and counted, dropped, or refused."
    rng = np.random.default_rng(0)
    p = write(tmp_path / 'tvr_x.jsonl', json.dumps(dict(vid_name='v', duration=200, ts=[160, 170], desc='late', desc_id=1)) + '\n')
    with h5py.File(tmp_path / 'v.h5', 'w') as f: f['v'] = rng.normal(size=(134, 4)).astype('f4')
    write_text_store(tmp_path / 'q.h5', {1: TokenFeatures(rng.normal(size=(4, 4)))})
    args = (read_tvr(p), VideoFeatures([H5Store(tmp_path / 'v.h5')], tef=False, max_len=100, long_video='truncate'), TextStore(tmp_path / 'q.h5'))
    with pytest.raises(DataError, match=r"query 1 starts at 160.0 s, after the 100 clips kept of video 'v'"):
        VCMRDataset(*args, late_window='strict')
    with pytest.warns(RepairWarning, match='late_window_clamped'):
        ds = VCMRDataset(*args)
    assert (ds[0]['st_idx'], ds[0]['ed_idx']) == (99, 99) and ds.counts == {'late_window_clamped': 1}
    with pytest.warns(RepairWarning):
        assert len(VCMRDataset(*args, late_window='drop')) == 0


def test_qvhighlights_relevant_clips_past_the_features(tmp_path):
    q = write(tmp_path / 'highlight_val_release.jsonl', json.dumps(dict(qid=5, query='x', vid='yt_0.0_150.0', duration=150,
              relevant_windows=[[100, 110]], relevant_clip_ids=[50, 51, 52, 53, 54], saliency_scores=[[1, 1, 1]] * 5)) + '\n')
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / 'v.h5', 'w') as f: f['yt_0.0_150.0'] = rng.normal(size=(40, 4)).astype('f4')
    write_text_store(tmp_path / 't.h5', {5: TokenFeatures(rng.normal(size=(3, 4)))})
    ds = VMRDataset(read_qvhighlights(q), VideoFeatures([H5Store(tmp_path / 'v.h5')], max_len=75, long_video='truncate'),
                    TextStore(tmp_path / 't.h5'), clip_len=2.0)
    with pytest.raises(DataError, match=r"query 5: all relevant clips are past the 40 feature clips of 'yt_0.0_150.0'"):
        ds[0]


def test_empty_annotation_file(tmp_path):
    csv = durations_csv(tmp_path / 'd.csv', V1=12.0)
    ann = read_charades_sta(write(tmp_path / 'a.txt', ''), csv)
    with pytest.raises(DataError, match=r'a.txt: no queries'):
        VMRDataset(ann, None, None)
