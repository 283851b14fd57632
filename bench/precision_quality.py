"""What bf16 autocast changes in MESM's numbers, against fp32, on this machine.

    python bench/precision_quality.py [--threads 2] [--epochs 3] [--seed 0] [--out bench/results/precision_quality_<device>.json]

1. The parity fixture (`tests/fixtures/mesm_parity_tiny`: a small random official model and the official float32
   outputs): the eval forward and the eval objective at `fp32` and at `bf16` (`precision_autocast` of
   `12_training`), as the largest absolute difference of `pred_spans`, `pred_logits` and `saliency_scores` to the
   official tensors, and each loss against the official one.
2. The synthetic benchmark (`mesm-prem synth`, seed `--seed`): `synthetic_experiment` trained `--epochs` epochs
   with `train.precision` fp32, then bf16, everything else equal (seeds, data): each epoch's training loss, the
   test split's R1@0.5, R1@0.7, mIoU and mAP, and the wall time of each run.

Not a test: a measurement, recorded with the date and machine.
"""
import argparse, json, tempfile, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ('loss_span', 'loss_giou', 'loss_label', 'loss_saliency', 'loss_rec_ss')


def parity(device) -> dict:
    "The fixture's eval forward and objective at fp32 and bf16: differences to the official float32 numbers."
    from safetensors.torch import load_file
    from mesm_prem.losses import MESMCriterion
    from mesm_prem.mesm import MESM, config_from_official_state_dict, convert_official_state_dict
    from mesm_prem.training import precision_autocast
    P = ROOT/'tests'/'fixtures'/'mesm_parity_tiny'
    sd, inp = load_file(P/'state_dict.safetensors'), load_file(P/'inputs.safetensors')
    ref = load_file(P/'outputs_eval.safetensors')
    lref = json.loads((P/'losses.json').read_text())['eval']
    cfg = config_from_official_state_dict(sd, n_heads=json.loads((P/'config.json').read_text())['config']['nheads'])
    m = MESM(cfg).eval(); m.load_state_dict(convert_official_state_dict(sd), strict=True); m.to(device)
    mv = lambda x: x.to(device)
    args = dict(video_feat=mv(inp['video_feat']), video_mask=mv(inp['video_mask']), words_feat=mv(inp['text_feat']),
                words_mask=mv(inp['words_mask'][:, :16]), group_sizes=inp['num_clips'], neg_index=mv(inp['neg_index']))
    tg = dict(norm_windows=[mv(x[None]) for x in inp['norm_moment']], video_mask=mv(inp['video_mask']),
              clip_mask=mv(inp['clip_mask']), group_sizes=inp['num_clips'], pos_idx=mv(inp['pos_idx']),
              neg_idx=mv(inp['neg_idx']), words_label=mv(inp['words_label']))
    out = {}
    for p in ('fp32', 'bf16'):
        with torch.no_grad(), precision_autocast(p, device):
            o = m(**args)
            losses, total = MESMCriterion()(o, tg, training=False)
        out[p] = dict(
            max_abs_diff={k: (o[k].double().cpu() - ref[k].double()).abs().max().item()
                          for k in ('pred_spans', 'pred_logits', 'saliency_scores')},
            dtypes={k: str(o[k].dtype) for k in ('pred_spans', 'pred_logits', 'saliency_scores')},
            losses={k: losses[k].item() for k in LOSSES}, total=total.item())
    out['official'] = dict(losses={k: lref['loss_dict'][k] for k in LOSSES}, total=lref['total_loss'])
    return out


def synthetic(device, epochs: int, seed: int) -> dict:
    "`synthetic_experiment` trained at fp32, then at bf16: losses per epoch, test metrics, wall time."
    from mesm_prem.config import apply_overrides
    from mesm_prem.experiments import synthetic_experiment
    from mesm_prem.run_mesm import train_mesm
    from mesm_prem.synthetic import SynthConfig, write_synthetic_benchmark
    from mesm_prem.training import read_metrics
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic_benchmark(tmp/'bench', SynthConfig(seed=seed))
        for p in ('fp32', 'bf16'):
            exp = apply_overrides(synthetic_experiment(tmp/'bench', epochs=epochs), [f'train.precision={p}'])
            t0 = time.perf_counter()
            res = train_mesm(exp, tmp/f'run_{p}', device=str(device), progress=False)
            secs = time.perf_counter() - t0
            recs = read_metrics(tmp/f'run_{p}'/'metrics.jsonl')
            out[p] = dict(seconds=round(secs, 1), train_loss=[round(r['train/loss'], 4) for r in recs],
                          test={k: res['test'][k] for k in ('MR-full-R1@0.5', 'MR-full-R1@0.7', 'MR-full-miou',
                                                             'MR-full-mAP')},
                          val_selected={k: res['val'][k] for k in ('MR-full-R1@0.5', 'MR-full-miou')})
            print(p, json.dumps(out[p]), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--seed', type=int, default=0, help='benchmark seed')
    ap.add_argument('--out')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    from mesm_speed import machine
    from mesm_prem.training import bf16_matmul_units, keep_large_blocks
    if device.type == 'cpu': torch.set_flush_denormal(True); keep_large_blocks()
    m = machine(device, a.threads) | (dict(bf16_matmul_units=bf16_matmul_units()) if device.type == 'cpu' else {})
    res = dict(machine=m, parity=parity(device))
    print(json.dumps(res['parity'], indent=1), flush=True)
    res['synthetic'] = dict(epochs=a.epochs, benchmark_seed=a.seed, **synthetic(device, a.epochs, a.seed))
    out = Path(a.out or Path(__file__).parent/'results'/f"precision_quality_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + '\n')
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
