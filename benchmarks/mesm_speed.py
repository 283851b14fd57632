"""Speed and memory of MESM at the official Charades-STA C+SF/C shapes (mesm.md section 12).

    python benchmarks/mesm_speed.py [--device cpu|cuda] [--threads 2] [--steps 5] [--out benchmarks/results/mesm_speed_<device>.json]

Train step = forward (training mode, masked-word branch on) + objective + zero_grad + backward + clipping +
AdamW step; inference = eval-mode forward. B = 32 sentence rows in 12 videos (8 x 3 + 4 x 2), 16 tokens of
512-d CLIP features, Lv = 48 (typical) and 194 (longest). Median over `--steps` after 2 warm-up steps. Peak
memory: resident set size (CPU) or torch.cuda.max_memory_allocated (CUDA). Not a test: a measurement.
"""
import argparse, json, platform, resource, statistics, time
from pathlib import Path

import numpy as np
import torch

from mesm_prem.mesm import MESM, MESM_PRESETS, sample_masked_words
from mesm_prem.losses import targets_from_batch


def batch(Lv, device, g):
    groups = [3] * 8 + [2] * 4
    B, W = sum(groups), 16
    video = torch.randn(B, Lv, 2818, generator=g)
    vm = torch.ones(B, Lv, dtype=torch.bool)
    words = torch.randn(B, W, 512, generator=g); wm = torch.ones(B, W, dtype=torch.bool)
    st = torch.randint(0, Lv // 2, (B,), generator=g); ln = torch.randint(2, Lv // 3, (B,), generator=g)
    cm = torch.zeros(B, Lv, dtype=torch.bool)
    for i in range(B): cm[i, st[i]:st[i] + ln[i]] = True
    nw = [torch.tensor([[st[i] / Lv, (st[i] + ln[i]) / Lv]]) for i in range(B)]
    unk = torch.zeros(B, W, dtype=torch.bool); lab = torch.randint(0, 1114, (B, W), generator=g)
    wt = torch.ones(B, W, dtype=torch.long); wt[:, 0] = 0; wt[:, -1] = 0
    mv = lambda t: t.to(device)
    tg = dict(norm_windows=[mv(x) for x in nw], video_mask=mv(vm), clip_mask=mv(cm), group_sizes=torch.tensor(groups),
              pos_idx=None, neg_idx=None, words_label=mv(lab), saliency_label=None)
    return dict(video_feat=mv(video), video_mask=mv(vm), words_feat=mv(words), words_mask=mv(wm), group_sizes=torch.tensor(groups),
                unknown_mask=mv(unk), clip_mask=mv(cm)), wt, tg


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def measure(Lv, device, steps, amp):
    exp = MESM_PRESETS['charades_C+SF_C']
    model = MESM(exp.model).to(device)
    crit = exp.criterion()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    inp, wt, tg = batch(Lv, device, g)
    rng = np.random.RandomState(0)
    use_amp = amp and device.type == 'cuda'
    t_train, t_fwd, t_bwd, t_inf = [], [], [], []
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 2):
        model.train(); sync(device); t0 = time.perf_counter()
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=use_amp):
            masked = sample_masked_words(inp['words_mask'].cpu(), wt, rng).to(device)
            out = model(**inp, masked_words=masked)
            losses, total = crit(out, tg, training=True)
        sync(device); t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True); total.backward(); sync(device); t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1); opt.step(); sync(device); t3 = time.perf_counter()
        if i >= 2: t_train.append(t3 - t0); t_fwd.append(t1 - t0); t_bwd.append(t2 - t1)
    model.eval()
    with torch.no_grad():
        for i in range(steps + 2):
            sync(device); t0 = time.perf_counter()
            with torch.autocast('cuda', dtype=torch.bfloat16, enabled=use_amp):
                model(**{k: v for k, v in inp.items() if k not in ('unknown_mask', 'clip_mask')})
            sync(device)
            if i >= 2: t_inf.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda'
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    med = statistics.median
    return dict(Lv=Lv, rows=32, train_step_s=med(t_train), fwd_loss_s=med(t_fwd), bwd_s=med(t_bwd), inference_s=med(t_inf),
                train_range_s=[min(t_train), max(t_train)], peak_gib=peak,
                params=sum(p.numel() for p in model.parameters()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--lengths', type=int, nargs='*', default=[48, 194])
    ap.add_argument('--no-amp', action='store_true')
    ap.add_argument('--out')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    device = torch.device(a.device)
    rows = [measure(L, device, a.steps, not a.no_amp) for L in a.lengths]
    machine = dict(platform=platform.platform(), processor=platform.processor() or platform.machine(), threads=a.threads,
                   torch=torch.__version__, device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
                   amp='bf16' if (device.type == 'cuda' and not a.no_amp) else 'fp32')
    res = dict(machine=machine, results=rows,
               official_reference='mesm.md section 12, official code, 2-vCPU AMD EPYC, 2 threads: train step 7.07 s (Lv 194) / 1.70 s (Lv 48); inference 1.72 s / 0.35 s; peak RSS 4.8 / 1.6 GB')
    print(json.dumps(res, indent=1))
    out = Path(a.out or f"benchmarks/results/mesm_speed_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__':
    main()
