"Loading across processes: DataLoader workers open their own HDF5 handles and give the same batches."
import torch
from mesm_prem.stores import H5Store, MLMVocab, TextStore, VideoFeatures
from mesm_prem.datasets import VMRDataset, set_vmr_epoch, vmr_loader
from mesm_prem.records import read_charades_sta





def _dataset(root, man):
    v = root / 'vmr'
    ann = read_charades_sta(v / 'charades_sta_train.txt', v / 'Charades_v1_train.csv')
    video = VideoFeatures([H5Store(v / f) for f in man['vmr']['video_features']], max_len=194)
    vocab = MLMVocab.from_counts(v / man['vmr']['vocab'], man['vmr']['vocab_size'])
    return VMRDataset(ann, video, TextStore(v / 'text' / 'charades_sta_train.h5', max_words=16), vocab, seed=3)


def _batches(ds, workers, epoch):
    dl = vmr_loader(ds, batch_size=4, train=True, seed=3, num_workers=workers)
    set_vmr_epoch(dl, epoch)
    return list(dl)


def test_workers_match_single_process(synth):
    ds = _dataset(*synth)
    ds.video(ds.ann[0].vid)   # the parent opens its handles first; the workers must not reuse them
    for epoch in (0, 1):
        a, b = _batches(ds, 0, epoch), _batches(ds, 2, epoch)
        assert len(a) == len(b) > 1
        for x, y in zip(a, b):
            assert x.qid == y.qid
            for name in ('videos', 'words_feat', 'pos_idx', 'neg_idx', 'clip_mask', 'words_label'):
                assert torch.equal(getattr(x, name), getattr(y, name)), name


def test_epochs_differ_and_cover_every_query(synth):
    ds = _dataset(*synth)
    e0, e1 = _batches(ds, 0, 0), _batches(ds, 0, 1)
    assert [b.qid for b in e0] != [b.qid for b in e1]
    assert sorted(q for b in e0 for q in b.qid) == sorted(q.qid for q in ds.ann)


def test_preload_equals_lazy(synth):
    root, man = synth
    p = root / 'vmr' / 'slowfast.hdf5'
    lazy, pre = H5Store(p), H5Store(p, preload=True)
    assert all((lazy[k] == pre[k]).all() for k in lazy.keys())


class _Probe(torch.utils.data.Dataset):
    "Reads through a store and reports which process and which file handle did it."
    def __init__(self, store, key):
        self.store, self.key = store, key
        store[key]
        self.parent_handle = store._h   # opened in the parent, before the workers fork
    def __len__(self): return 4
    def __getitem__(self, i):
        import os
        self.store[self.key]
        return os.getpid(), self.store._pid, self.store._h is self.parent_handle


def test_each_worker_opens_its_own_handle(synth):
    import os
    root, man = synth
    store = H5Store(root / 'vmr' / 'slowfast.hdf5')
    probe = _Probe(store, store.keys()[0])
    rows = list(torch.utils.data.DataLoader(probe, batch_size=None, num_workers=2))
    assert all(pid != os.getpid() for pid, _, _ in rows)          # read in the workers
    assert all(pid == owner for pid, owner, _ in rows)             # by a handle the worker opened
    assert not any(shared for _, _, shared in rows)                # not the parent's handle
