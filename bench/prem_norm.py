"""PREM Eq 13: P_st/P_ed softmaxed per video (`eval.norm='video'`) or jointly over the top videos ('joint'), measured
on the validation split of the synthetic corpus, for localizers trained with and without Shared-Norm (Eq 11).

    python bench/prem_norm.py [--threads 2] [--seeds 0 1 2] [--retriever-epochs 8] [--localizer-epochs 4]
                              [--shared-norm 1 0] [--bench-seed 0] [--out bench/results/prem_norm_cpu.json]

1. The synthetic benchmark (`mesm-prem synth`, `write_synthetic_benchmark`, seed `--bench-seed`): its `vcmr/` part,
   240 training videos, a validation split of 60 videos and 226 queries.
2. For each training seed (`train.seed`): `synthetic_prem_experiment` with `train.select='last'` (each stage keeps
   its last epoch, so no checkpoint was chosen by a search under either normalisation), the retriever trained once
   and reused by both localizers (it does not read `model.shared_norm`: the two runs would train the same one),
   then the localizer with `model.shared_norm` True and False, from the same initialisation and the same negatives.
3. Each trained pair searches the validation split twice, `eval.norm='video'` then `'joint'`, from one retrieval
   (the same top 10 videos): VR, VCMR (R@1/10/100 at IoU 0.5 and 0.7) and SVMR. SVMR localises in the right video
   alone, where both normalisations are the same softmax; the script checks that its metrics agree.

The JSON holds every run's metrics, and per setting the mean and the (sample) standard deviation over seeds, and
the mean and spread of the paired difference joint - video. Not a test: a measurement, recorded with the machine.
About 10 minutes on an idle 2-core CPU (`--localizer-epochs 2` or fewer `--seeds` for less; under load,
several times that).
"""
import argparse, dataclasses, json, shutil, statistics, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
VCMR = [f'VCMR-{t}-r{k}' for t in ('0.5', '0.7') for k in (1, 10, 100)]
SVMR = [f'SVMR-{t}-r{k}' for t in ('0.5', '0.7') for k in (1, 10, 100)]
VR = ['VR-r1', 'VR-r10', 'VR-r100']
NORMS = ('video', 'joint')


def train_pair(bench: Path, runs: Path, seed: int, r_epochs: int, l_epochs: int, shared: list) -> dict:
    """Train the retriever once and a localizer per `model.shared_norm` in `shared`: {shared_norm: (exp, run dir)}."""
    from mesm_prem.config import apply_overrides, save_config
    from mesm_prem.experiments import synthetic_prem_experiment
    from mesm_prem.run_prem import train_prem
    out, first = {}, None
    for sn in shared:
        exp = apply_overrides(synthetic_prem_experiment(bench, r_epochs, l_epochs),
                              [f'train.seed={seed}', 'train.select=last', f'model.shared_norm={str(sn).lower()}'])
        run = runs/f"seed{seed}_sn{int(sn)}"
        if first is not None:     # the finished retriever stage and its ranking of the training corpus, reused
            run.mkdir(parents=True); save_config(exp, run/'config.json')
            shutil.copytree(first/'retriever', run/'retriever'); shutil.copy(first/'hard_negatives.json', run)
        t0 = time.perf_counter()
        train_prem(exp, run, device='cpu', progress=False)
        print(f"seed {seed} shared_norm {sn}: trained in {time.perf_counter() - t0:.0f} s", flush=True)
        out[sn], first = (exp, run), first or run
    return out


@torch.no_grad()
def search_both(exp, run: Path, split: str = 'val') -> dict:
    "The run's models search `split` once per normalisation, from one retrieval: {norm: flat metrics}."
    from mesm_prem.config import safe_load
    from mesm_prem.corpus import PREMInputs, flat_metrics, ground_truth_vcmr, retrieve_split, search_corpus
    from mesm_prem.metrics import eval_vcmr
    from mesm_prem.prem import PREMLocalizer, PREMRetriever
    ret, loc = PREMRetriever(exp.model).eval(), PREMLocalizer(exp.model).eval()
    ret.load_state_dict(safe_load(run/'retriever'/'checkpoints'/'best.pt'))
    loc.load_state_dict(safe_load(run/'localizer'/'checkpoints'/'best.pt'))
    inputs = PREMInputs(exp)
    retrieval = retrieve_split(ret, inputs, split)
    gt = ground_truth_vcmr(inputs.annotations(split))
    res = {}
    for norm in NORMS:
        inputs.exp = dataclasses.replace(exp, eval=dataclasses.replace(exp.eval, norm=norm))
        res[norm] = flat_metrics(eval_vcmr(search_corpus(ret, loc, inputs, split, retrieval=retrieval), gt))
    assert all(res['video'][k] == res['joint'][k] for k in SVMR + VR), "SVMR and VR cannot depend on eval.norm"
    return res


def summary(values: list) -> dict:
    return dict(mean=round(statistics.fmean(values), 2),
                std=round(statistics.stdev(values), 2) if len(values) > 1 else 0., min=min(values), max=max(values))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--retriever-epochs', type=int, default=8)
    ap.add_argument('--localizer-epochs', type=int, default=4)
    ap.add_argument('--shared-norm', type=int, nargs='+', choices=[0, 1], default=[1, 0])
    ap.add_argument('--bench-seed', type=int, default=0)
    ap.add_argument('--out')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from mesm_speed import machine
    from mesm_prem.synthetic import SynthConfig, write_synthetic_benchmark
    shared = [bool(s) for s in a.shared_norm]
    res = dict(machine=machine(torch.device('cpu'), a.threads), benchmark_seed=a.bench_seed, split='val',
               retriever_epochs=a.retriever_epochs, localizer_epochs=a.localizer_epochs, select='last',
               seeds=a.seeds, runs=[])
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic_benchmark(tmp/'bench', SynthConfig(seed=a.bench_seed))
        for seed in a.seeds:
            for sn, (exp, run) in train_pair(tmp/'bench', tmp/'runs', seed, a.retriever_epochs, a.localizer_epochs,
                                             shared).items():
                m = search_both(exp, run)
                res['runs'].append(dict(seed=seed, shared_norm=sn, VR={k: m['video'][k] for k in VR},
                                        SVMR={k: m['video'][k] for k in SVMR},
                                        VCMR={n: {k: m[n][k] for k in VCMR} for n in NORMS}))
                print(json.dumps(res['runs'][-1]), flush=True)
        val = json.loads((tmp/'bench'/'benchmark.json').read_text())['vcmr']['splits']['val']
        res['val_videos'], res['val_queries'] = val['videos'], val['queries']
    res['seconds'] = round(time.perf_counter() - t_all)
    res['summary'] = {}
    for sn in shared:
        rs = [r for r in res['runs'] if r['shared_norm'] == sn]
        s = res['summary'][f'shared_norm={sn}'] = dict(
            VR={k: summary([r['VR'][k] for r in rs]) for k in VR},
            SVMR={k: summary([r['SVMR'][k] for r in rs]) for k in SVMR},
            VCMR={n: {k: summary([r['VCMR'][n][k] for r in rs]) for k in VCMR} for n in NORMS})
        s['VCMR_joint_minus_video'] = {k: summary([round(r['VCMR']['joint'][k] - r['VCMR']['video'][k], 2)
                                                   for r in rs]) for k in VCMR}
    out = Path(a.out or Path(__file__).parent/'results'/'prem_norm_cpu.json')
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + '\n')
    print(json.dumps(res['summary'], indent=1)); print(f"wrote {out} ({res['seconds']} s)")


if __name__ == '__main__':
    main()
