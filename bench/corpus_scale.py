"""Retrieval at corpus scale: latency, memory and recall of corpus search against the number of videos.

    python bench/corpus_scale.py [--index flat|ann] [--sizes 10000 30000 100000 300000] [--device cpu|cuda]
                                 [--threads 2] [--dir SCRATCH] [--nlist 1024] [--m-pq 48]
                                 [--points 32,1024,400 64,4096,1000 64,4096,0]
                                 [--out bench/results/corpus_scale[_ann]_<device>.json]

`--index flat` (the default): the exact `FlatCorpusIndex.search`. For each size, a synthetic index in the TVR shape
is written to a scratch folder on disk (40-64 clips per video, mean 51.5 as TVR; 2 streams; d = 384; float16: 1.58
kB per clip), opened memory-mapped, and searched for the top 100 videos by one query and by a batch of 64 (median of
3 passes after one warm-up pass; each pass reads the whole index once, in chunks of 65,536 clips; 1M on CUDA;
indexes larger than 40 % of the RAM: one pass, no warm-up, as they stream from disk). Also reported: the bytes one
pass reads, the time those bytes take at this machine's measured copy bandwidth and at an H200's 4.3 TB/s (the
bandwidth-bound limit of one pass), and the peak anonymous memory above the process's baseline, polled every 5 ms
(the working set, without the page cache that maps the index). On CUDA the index is read into GPU memory once (where
it fits) and the pass runs there. Sizes whose index does not fit on the scratch disk are skipped and said so.

`--index ann`: `ANNCorpusIndex` (faiss IVF-PQ per stream, then exact Eq 6 on the candidate videos), on the CPU,
against the exact flat search. The corpus has the same shape but has structure, as retrieval embeddings do: per
stream, 1,000 topic directions; each video a direction near one topic (noise of norm about 0.7), each clip near its
video's direction (noise of norm about 1); unit vectors. The 64 queries are noisy copies of the directions of 64
random videos. For each size: the exact top 100 of the 64 queries (`FlatCorpusIndex.search`, memory-mapped); the ANN
index built over it (IVF with min(`--nlist`, sqrt(clips) / 4) lists, PQ `--m-pq` bytes a clip, trained on 100,000
clips), its bytes and build time; then for each operating point (`--points`: lists probed, nearest clips a stream,
candidate videos rescored exactly) the candidate videos a query, the latency of one query (median over 8 queries,
each timed on its second run: warm caches) and of the batch of 64 (its second run), and `recall_at_100`: the
share of the exact top 100 videos it returns, over the 64 queries. The first point gives the row's `recall_at_100` and `seconds_per_query`.

Every size's row has `seconds_per_query` (one query alone). Not a test: a measurement.
"""
import argparse, json, os, shutil, statistics, tempfile, time
from pathlib import Path

import numpy as np
import torch

from mesm_prem.corpus import ANNCorpusIndex, FlatCorpusIndex
from mesm_speed import machine   # the same machine record as every bench script

H200_BW = 4.3e12


def rss_anon() -> int:
    "Peak-free current anonymous resident memory in bytes (Linux), else 0."
    try:
        for line in open('/proc/self/status'):
            if line.startswith('RssAnon:'): return int(line.split()[1]) * 1024
    except OSError: pass
    return 0


class PeakAnon:
    "Polls the anonymous resident memory every 5 ms in a thread; `.peak` is the largest value seen."
    def __enter__(self):
        import threading
        self.peak, self.stop = rss_anon(), False
        def run():
            while not self.stop: self.peak = max(self.peak, rss_anon()); time.sleep(0.005)
        self.t = threading.Thread(target=run, daemon=True); self.t.start(); return self
    def __exit__(self, *a): self.stop = True; self.t.join()


def copy_bandwidth(n_bytes: int = 1 << 30) -> float:
    "Bytes per second of a large tensor copy (read + write counted as read bytes)."
    a = torch.empty(n_bytes // 4); a.fill_(1.)
    b = torch.empty_like(a)
    b.copy_(a); t = time.perf_counter()
    for _ in range(3): b.copy_(a)
    return 3 * n_bytes / (time.perf_counter() - t)


def write_index(folder: Path, n_videos: int, M: int = 2, d: int = 384, seed: int = 0) -> FlatCorpusIndex:
    rng = np.random.default_rng(seed)
    n_clips = rng.integers(40, 65, n_videos)
    idx = FlatCorpusIndex.allocate(folder, [f"v{i:07d}" for i in range(n_videos)], n_clips, M, d)
    block = rng.standard_normal((8192, M, d), dtype=np.float32)
    block = (block / np.linalg.norm(block, axis=-1, keepdims=True)).astype(np.float16)
    C = len(idx.clips)
    for i in range(0, C, len(block)):
        n = min(len(block), C - i); idx.clips[i:i + n] = block[:n]
    idx.mask[:] = True
    idx.flush()
    return FlatCorpusIndex.open(folder)


def timed_passes(idx, q, k, chunk, n=3, warm=True) -> list:
    if warm: idx.search(q, k, chunk)                    # warm-up pass (page cache, allocator)
    out = []
    for _ in range(n):
        if q.device.type == 'cuda': torch.cuda.synchronize()
        t = time.perf_counter(); idx.search(q, k, chunk)
        if q.device.type == 'cuda': torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return out


def unit(x): return x / np.linalg.norm(x, axis=-1, keepdims=True)


def write_clustered(folder: Path, n_videos: int, M: int = 2, d: int = 384, seed: int = 0):
    "A flat index with topic structure (memory-mapped) and the (V, M, d) video directions."
    rng = np.random.default_rng(seed)
    topics = unit(rng.standard_normal((1000, M, d), dtype=np.float32))
    vdir = unit(topics[rng.integers(0, 1000, n_videos)]
                + 0.7 * unit(rng.standard_normal((n_videos, M, d), dtype=np.float32)))
    n = rng.integers(40, 65, n_videos)
    idx = FlatCorpusIndex.allocate(folder, [f"v{i:07d}" for i in range(n_videos)], n, M, d)
    o = idx.offsets
    for v0 in range(0, n_videos, 4096):
        v1 = min(v0 + 4096, n_videos)
        owner = np.repeat(np.arange(v0, v1), n[v0:v1])
        x = vdir[owner] + unit(rng.standard_normal((len(owner), M, d), dtype=np.float32))
        idx.clips[o[v0]:o[v1]] = unit(x).astype(np.float16)
    idx.mask[:] = True
    idx.flush()
    return FlatCorpusIndex.open(folder), vdir


def median_time(f, n=3):
    f(); ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def ann_row(folder: Path, V: int, a) -> dict:
    "One size of `--index ann`: exact top 100, the ANN index, and per operating point its latency and recall@100."
    t = time.perf_counter(); flat, vdir = write_clustered(folder, V); t_write = time.perf_counter() - t
    rng = np.random.default_rng(1)
    q = torch.from_numpy(unit(vdir[rng.integers(0, V, 64)] + 0.5 * unit(rng.standard_normal((64, 2, 384), dtype=np.float32))))
    t = time.perf_counter(); _, exact = flat.search(q, 100); t_exact = time.perf_counter() - t
    t = time.perf_counter()
    ann = ANNCorpusIndex.build(flat, nlist=min(a.nlist, max(16, int(len(flat.clips) ** 0.5 // 4))), m_pq=a.m_pq)
    t_build = time.perf_counter() - t
    points = []
    for nprobe, cps, rescore in a.points:
        kw = dict(nprobe=nprobe, clips_per_stream=cps, rescore=rescore)
        _, got = ann.search(q, 100, **kw)
        recall = np.mean([len(set(e.tolist()) & set(g.tolist())) / 100 for e, g in zip(exact, got)])
        n_cand = float(np.mean([len(c) for c in ann.candidates(q, nprobe, cps, 100, rescore=0)]))
        q1 = statistics.median([median_time(lambda: ann.search(q[i:i + 1], 100, **kw), 1) for i in range(8)])
        x = dict(nprobe=nprobe, clips_per_stream=cps, rescore=rescore, candidates_per_query=round(n_cand, 1),
                 seconds_q1=round(q1, 4), seconds_q64=round(median_time(lambda: ann.search(q, 100, **kw), 1), 3),
                 recall_at_100=round(float(recall), 4))
        x['seconds_per_query_q64'] = round(x['seconds_q64'] / 64, 5)
        points.append(x); print(V, x, flush=True)
    p = dict(ann.params); [p.pop(k) for k in ('nprobe', 'clips_per_stream', 'rescore')]
    return dict(videos=V, clips=int(len(flat.clips)), flat_bytes=int(flat.nbytes), ann_bytes=int(ann.nbytes), ann_params=p,
                seconds_write=round(t_write, 1), seconds_exact_q64=round(t_exact, 2), seconds_build=round(t_build, 1),
                points=points, recall_at_100=points[0]['recall_at_100'], seconds_per_query=points[0]['seconds_q1'])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--index', choices=['flat', 'ann'], default='flat', help='exact flat search, or faiss candidates + exact rescoring (CPU)')
    ap.add_argument('--sizes', type=int, nargs='*', default=[10_000, 30_000, 100_000, 300_000])
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--dir', help='scratch folder for the indexes (default: a temporary folder)')
    ap.add_argument('--nlist', type=int, default=1024, help='ann: IVF lists (at most sqrt(clips) / 4)')
    ap.add_argument('--m-pq', type=int, default=48, help='ann: PQ bytes a clip')
    ap.add_argument('--points', nargs='*', default=['32,1024,400', '64,4096,1000', '64,4096,0'],
                    help='ann: operating points NPROBE,CLIPS_PER_STREAM,RESCORE (lists probed, nearest clips a stream, '
                         'candidate videos rescored exactly, 0: all); the first gives the row\'s recall_at_100 and seconds_per_query')
    ap.add_argument('--out')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if a.index == 'ann' and dev.type != 'cpu': ap.error('--index ann runs on the CPU (faiss-cpu)')
    try: a.points = [tuple(int(v) for v in x.split(',')) for x in a.points]; assert all(len(x) == 3 for x in a.points)
    except (ValueError, AssertionError): ap.error(f"--points: each NPROBE,CLIPS_PER_STREAM,RESCORE, got {a.points}")
    scratch = Path(a.dir or tempfile.mkdtemp(prefix='corpus_scale_'))
    bw = copy_bandwidth()
    ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    rows = []
    for N in a.sizes:
        need = int(N * 52 * 2 * 384 * 2 * 1.05)
        free = shutil.disk_usage(scratch if scratch.exists() else scratch.parent).free
        if need > free:
            rows.append(dict(videos=N, skipped=f"the index needs about {need / 1e9:.0f} GB, the scratch disk has {free / 1e9:.0f} GB free"))
            print(rows[-1], flush=True); continue
        folder = scratch/f"n{N}"
        if a.index == 'ann':
            try: rows.append(ann_row(folder, N, a)); print(rows[-1], flush=True)
            finally: shutil.rmtree(folder, ignore_errors=True)
            continue
        t = time.perf_counter(); idx = write_index(folder, N); t_write = time.perf_counter() - t
        n_bytes = idx.clips.nbytes + idx.mask.nbytes
        if dev.type == 'cuda':   # the index held in GPU memory
            idx = FlatCorpusIndex(idx.vids, idx.offsets, torch.from_numpy(np.asarray(idx.clips)).to(dev), torch.from_numpy(np.asarray(idx.mask)).to(dev))
        base = rss_anon()
        chunk = 1 << 16 if dev.type == 'cpu' else 1 << 20
        res = dict(videos=N, clips=int(idx.offsets[-1]), index_bytes=n_bytes, seconds_write=round(t_write, 2), from_disk=n_bytes >= 0.4 * ram)
        poll = PeakAnon().__enter__()
        for B in (1, 64):
            q = torch.nn.functional.normalize(torch.randn(B, 2, 384), dim=-1).to(dev)
            if dev.type == 'cuda': q = q.half()   # the products in float16 on the GPU (no float32 copy of the index)
            fits = n_bytes < 0.4 * ram   # in the page cache: warm passes; otherwise every pass streams from disk
            ts = timed_passes(idx, q, 100, chunk, 3 if fits else 1, fits)
            res[f"seconds_pass_q{B}"] = round(statistics.median(ts), 4)
            res[f"seconds_per_query_q{B}"] = round(statistics.median(ts) / B, 5)
        poll.__exit__()
        res['peak_working_memory_gib_polled'] = round(max(poll.peak - base, 0) / 2**30, 3)
        res['bandwidth_bound_s_this_machine'] = round(n_bytes / bw, 4)
        res['bandwidth_bound_s_h200'] = round(n_bytes / H200_BW, 6)
        res['seconds_per_query'] = res['seconds_per_query_q1']
        rows.append(res); print(res, flush=True)
        del idx
        shutil.rmtree(folder, ignore_errors=True)
    res = dict(machine=dict(machine(dev, a.threads), ram_gib=round(ram / 2**30, 1), copy_bandwidth_gbs=round(bw / 1e9, 2)),
               index=a.index, top_k=100, streams=2, d=384, dtype='float16', results=rows)
    name = 'corpus_scale' + ('_ann' if a.index == 'ann' else '')
    out = Path(a.out or Path(__file__).parent/'results'/f"{name}_{dev.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + '\n')
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
