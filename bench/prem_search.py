"""End-to-end PREM corpus search on a synthetic corpus the size of TVR val (2,179 videos, 10,895 queries).

    python bench/prem_search.py [--device cpu|cuda] [--threads 2] [--queries N] [--precision auto|fp32|bf16]
                                [--out bench/results/prem_search_<device>[_bf16|_fp32].json]

The corpus: 2,179 videos of 40-64 clips (mean about 51) with 4352-d image and 768-d subtitle clip features
(stored as float16 HDF5, as the HERO release), 10,895 queries of 8-30 RoBERTa-size (768-d) tokens, written in
the TVR layout to a scratch folder. The models: the full-size TVR configuration (hidden 384), untrained
(speed does not depend on the weights). Timed: building the corpus index (the retriever over every video),
then `search_corpus` (retrieval of every query, the localizer on the top 10 videos, Eq 13, NMS, the VR/VCMR
lists; SVMR off, as on a hidden test split). `--queries N` searches the first N queries only and also reports
the time extrapolated linearly to all queries (the index is built in full either way; the localizer encodes each
video once per search, so early queries pay more of that and the extrapolation is an upper bound). Peak memory: resident
set size (CPU) or torch.cuda.max_memory_allocated (CUDA). `--precision`: both models' `train.<stage>.precision`
(`precision_autocast` of `12_training`; `auto`, the default, is bf16 on CUDA and on CPUs with bf16 matrix units);
the default file name gets `_bf16` for bf16 on a CPU and `_fp32` for fp32 on CUDA. Not a test: a measurement.
"""
import argparse, dataclasses, json, platform, resource, tempfile, time
from pathlib import Path

import h5py
import numpy as np
import torch

from mesm_prem.stores import TokenFeatures, write_text_store
from mesm_prem.prem import PREMConfig, PREMLocalizer, PREMRetriever
from mesm_prem.corpus import CorpusIndex, PREMInputs, retrieve_split, search_corpus
from mesm_prem.experiments import PRESETS
from mesm_prem.training import autocast_dtype, bf16_matmul_units, keep_large_blocks


def write_corpus(root: Path, n_videos=2179, n_queries=10895, seed=0):
    rng = np.random.default_rng(seed)
    (root/'video_feature').mkdir(parents=True); (root/'sub_feature').mkdir(); (root/'query_feature').mkdir()
    vids = [f"bench_{i:05d}" for i in range(n_videos)]
    clips = rng.integers(40, 65, n_videos)
    with h5py.File(root/'video_feature'/'img.h5', 'w') as fi, h5py.File(root/'sub_feature'/'sub.h5', 'w') as fs:
        for v, n in zip(vids, clips):
            fi[v] = rng.standard_normal((n, 4352), dtype=np.float32).astype(np.float16)
            fs[v] = rng.standard_normal((n, 768), dtype=np.float32).astype(np.float16)
            fs[f"{v}-mask"] = (rng.random(n) < 0.6).astype(np.int8)
    v2d = {'val': {v: [round(float(n) * 1.5 - 0.7, 2), 19614 + i] for i, (v, n) in enumerate(zip(vids, clips))}}
    (root/'video2dur.json').write_text(json.dumps(v2d))
    items, lines = {}, []
    for q in range(n_queries):
        v = q // 5 % n_videos
        items[q] = TokenFeatures(rng.standard_normal((int(rng.integers(8, 31)), 768), dtype=np.float32))
        lines.append(json.dumps(dict(desc=f"query {q}", desc_id=q)))   # hidden answers, as test_public
    write_text_store(root/'query_feature'/'q.h5', items)
    (root/'queries.jsonl').write_text('\n'.join(lines) + '\n')
    return int(clips.sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--device', default='cpu'); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--queries', type=int, default=0, help='search only the first N queries (0: all 10,895)')
    ap.add_argument('--precision', choices=['auto', 'fp32', 'bf16'], default='auto',
                    help='auto: bf16 on CUDA and on CPUs with bf16 units, else fp32 (default: %(default)s)')
    ap.add_argument('--out')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.device == 'cpu': torch.set_flush_denormal(True); keep_large_blocks()
    dev = torch.device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter(); n_clips = write_corpus(root); t_write = time.perf_counter() - t0
        e = PRESETS['prem']['tvr']
        exp = dataclasses.replace(e, data=dataclasses.replace(e.data, root=str(root), annotations=dict(val='queries.jsonl'), video2dur='video2dur.json',
                                                              video_features=['video_feature/img.h5'], subtitles='sub_feature/sub.h5',
                                                              query_text='query_feature/q.h5'),
                                  train=dataclasses.replace(e.train, **{s: dataclasses.replace(getattr(e.train, s), precision=a.precision)
                                                                        for s in ('retriever', 'localizer')}))
        inputs = PREMInputs(exp)
        if a.queries:
            ann = inputs.annotations('val'); ann.queries = ann.queries[:a.queries]
        n_q = len(inputs.annotations('val'))
        torch.manual_seed(0)
        ret, loc = PREMRetriever(exp.model).to(dev).eval(), PREMLocalizer(exp.model).to(dev).eval()
        if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        index = CorpusIndex.build(ret, list(inputs.corpus('val')), inputs.video, inputs.subtitles, exp.eval.video_chunk, dev,
                                  precision=a.precision)
        if dev.type == 'cuda': torch.cuda.synchronize()
        t_index = time.perf_counter() - t0
        t0 = time.perf_counter()
        retrieval = retrieve_split(ret, inputs, 'val', index=index, device=dev)
        if dev.type == 'cuda': torch.cuda.synchronize()
        t_retrieve = time.perf_counter() - t0
        t0 = time.perf_counter()
        sub = search_corpus(ret, loc, inputs, 'val', index=index, device=dev, retrieval=retrieval, svmr=False)
        if dev.type == 'cuda': torch.cuda.synchronize()
        t_localize = time.perf_counter() - t0
        t_search = t_retrieve + t_localize
    assert len(sub['VCMR']) == n_q
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == 'cuda' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    from mesm_speed import machine
    prec = 'bf16' if autocast_dtype(a.precision, dev) == torch.bfloat16 else 'fp32'
    m = machine(dev, a.threads) | (dict(bf16_matmul_units=bf16_matmul_units()) if dev.type == 'cpu' else {})
    res = dict(machine=m, precision=prec, precision_setting=a.precision,
               videos=2179, clips=n_clips, queries_searched=n_q,
               seconds_write_corpus=round(t_write, 1), seconds_index=round(t_index, 2), seconds_retrieve=round(t_retrieve, 2),
               seconds_localize=round(t_localize, 2), seconds_search=round(t_search, 2),
               seconds_per_query=round(t_search / n_q, 4), seconds_end_to_end=round(t_index + t_search, 2),
               seconds_end_to_end_all_10895=round(t_index + t_search / n_q * 10895, 1), peak_memory_gib=round(peak, 2))
    print(json.dumps(res, indent=1))
    tag = {('cpu', 'bf16'): '_bf16', ('cuda', 'fp32'): '_fp32'}.get((dev.type, prec), '')
    out = Path(a.out or Path(__file__).parent/'results'/f"prem_search_{dev.type}{tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__':
    main()
