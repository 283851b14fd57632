"""The matrix-product bounds of the benchmarks: what the work counts in FLOP, and how fast this machine multiplies.

    python bench/flops.py [--threads 2] [--out bench/results/flops_<device>.json]

1. The peak rate: a 4096 x 1024 by 1024 x 1024 matrix product in fp32 and in bf16, and the shape of a d = 384
   feed-forward (40,960 x 384 by 384 x 1,536), in GFLOP/s (median of 5 after a warm-up).
2. The work, counted with `torch.utils.flop_counter.FlopCounterMode` (matrix products, attention through its
   math path so that every product is counted):
   - an MESM training step (forward, objective, backward) at the shapes of `bench/mesm_speed.py`, Lv 48 and 194;
   - PREM search at the shapes of `bench/prem_search.py`, on a small corpus of the same kind (the work per video,
     per query and per (query, clip) pair does not depend on the corpus size): building the corpus index (per
     video), retrieval (the query's encoding, then 2 M d per (query, clip) of the index, padding included) and
     localization (per query: its top 10 videos, the
     fusion and the boundary heads as they run, padding included), extrapolated to TVR val's 2,179 videos,
     113,868 clips and 10,895 queries.
The bound of a benchmark is its FLOP over the fp32 (or bf16) peak rate: no run of that work can be faster on this
machine with these products. Not a test: a measurement.
"""
import argparse, dataclasses, json, statistics, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from mesm_speed import batch, machine   # noqa: E402


def rate(m: int, k: int, n: int, dtype) -> float:
    "GFLOP/s of an (m, k) x (k, n) product in `dtype` (median of 5 after a warm-up)."
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b; ts = []
    for _ in range(5):
        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(ts) / 1e9


def counted(f) -> int:
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as fc: f()
    return fc.get_total_flops()


def mesm_step_flop(Lv: int) -> int:
    from mesm_prem.mesm import MESM, sample_masked_words
    from mesm_prem.experiments import PRESETS
    exp = PRESETS['mesm']['charades_sta_C+SF_C']
    model, crit = MESM(exp.model).train(), exp.criterion()
    inp, wt, tg = batch(Lv, 'cpu')
    masked = sample_masked_words(inp['words_mask'], wt, np.random.RandomState(0))
    def step():
        _, total = crit(model(**inp, masked_words=masked), tg, training=True)
        total.backward()
    return counted(step)


def prem_flop(n_videos: int = 40, n_queries: int = 40) -> dict:
    "Per video (index), per (query, clip) (retrieval), per query (localization) FLOP at the TVR shapes."
    from prem_search import write_corpus
    from mesm_prem.prem import PREMLocalizer, PREMRetriever
    from mesm_prem.corpus import CorpusIndex, PREMInputs, retrieve_split, search_corpus
    from mesm_prem.experiments import PRESETS
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_clips = write_corpus(root, n_videos, n_queries)
        e = PRESETS['prem']['tvr']
        exp = dataclasses.replace(e, data=dataclasses.replace(
            e.data, root=str(root), annotations=dict(val='queries.jsonl'), video2dur='video2dur.json',
            video_features=['video_feature/img.h5'], subtitles='sub_feature/sub.h5', query_text='query_feature/q.h5'))
        inputs = PREMInputs(exp)
        torch.manual_seed(0)
        ret, loc = PREMRetriever(exp.model).eval(), PREMLocalizer(exp.model).eval()
        box = {}
        with torch.no_grad():
            index_flop = counted(lambda: box.setdefault('index', CorpusIndex.build(
                ret, list(inputs.corpus('val')), inputs.video, inputs.subtitles, exp.eval.video_chunk, 'cpu')))
            retrieve_flop = counted(lambda: box.setdefault('ret', retrieve_split(ret, inputs, 'val', index=box['index'])))
            localize_flop = counted(lambda: search_corpus(ret, loc, inputs, 'val', index=box['index'], retrieval=box['ret'],
                                                          svmr=False))
    c = box['index'].chunks
    scored = sum(x.shape[0] * x.shape[2] for x in c)            # clip rows the products run over, padding included
    per_pair = 2 * c[0].shape[1] * c[0].shape[-1]              # (query, clip): one d-product per stream
    return dict(index_per_video=index_flop / n_videos, retrieval_per_query_clip=per_pair * scored / n_clips,
                query_encoding_per_query=(retrieve_flop - per_pair * scored * n_queries) / n_queries,
                localize_per_query=localize_flop / n_queries, small_corpus=dict(videos=n_videos, clips=n_clips, queries=n_queries))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    peak = dict(fp32=rate(4096, 1024, 1024, torch.float32), bf16=rate(4096, 1024, 1024, torch.bfloat16),
                fp32_d384_ffn=rate(40960, 384, 1536, torch.float32), bf16_d384_ffn=rate(40960, 384, 1536, torch.bfloat16))
    mesm = {str(L): mesm_step_flop(L) for L in (48, 194)}
    p = prem_flop()
    V, C, Q = 2179, 113_868, 10_895
    tvr = dict(index=p['index_per_video'] * V, retrieval=(p['retrieval_per_query_clip'] * C + p['query_encoding_per_query']) * Q,
               localize=p['localize_per_query'] * Q)
    tvr['total'] = sum(tvr.values())
    from mesm_prem.training import bf16_matmul_units
    res = dict(machine=machine(torch.device('cpu'), a.threads) | dict(bf16_matmul_units=bf16_matmul_units()),
               peak_gflops={k: round(v, 1) for k, v in peak.items()},
               mesm_step_gflop={k: round(v / 1e9, 1) for k, v in mesm.items()},
               prem_per_unit_flop={k: (round(v) if isinstance(v, float) else v) for k, v in p.items()},
               prem_tvr_val_gflop={k: round(v / 1e9) for k, v in tvr.items()},
               prem_tvr_val=dict(videos=V, clips=C, queries=Q))
    print(json.dumps(res, indent=1))
    out = Path(a.out or Path(__file__).parent/'results'/'flops_cpu.json')
    out.write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__':
    main()
