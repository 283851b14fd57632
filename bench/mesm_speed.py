"""Speed and memory of an MESM training step and of inference at the official Charades-STA C+SF/C shapes.

    python bench/mesm_speed.py [--device cpu|cuda] [--threads 2] [--steps 10] [--lengths 48 194]
                               [--no-dedup] [--grad-checkpoint] [--no-keep-blocks] [--precision auto|fp32|bf16] [--compile]
                               [--out bench/results/mesm_speed_<device>[_bf16|_fp32].json]

Train step = forward (training mode, masked-word branch on) + objective + zero_grad + backward + clipping at 0.1 +
AdamW step, as the official code was timed (`docs/official_mesm.md`, Timing the official code). Inference =
eval-mode forward under no_grad.
The batch is the official one: B = 32 sentence rows of 12 videos (8 x 3 + 4 x 2 rows; every row repeats its
video's clips, as the official collate), 16 tokens of 512-d CLIP features, Lv = 48 (typical) and 194 (the
longest Charades video), every clip real, moments of 5-50 % of the video. Median over `--steps` after 2 warm-up
steps. Every length runs in a fresh process, so the peak memory is its own: resident set size on CPU,
`torch.cuda.max_memory_allocated` on CUDA. `--precision` is the loop's setting (`precision_autocast` of
`12_training`): `auto` (the default) is bf16 autocast on CUDA and on CPUs with bf16 matrix units
(AMX), fp32 elsewhere; `fp32` and `bf16` force it. The default file name gets `_bf16` for bf16 on a CPU and
`_fp32` for fp32 on CUDA. `--no-dedup`: project every row's clips (and again for SS-MESM), as the official code.
`--grad-checkpoint`: activation checkpointing (less memory, more time). On CPU the trainer's
`keep_large_blocks` allocator setting is applied unless `--no-keep-blocks`. Not a test: a measurement; compare
ratios measured side by side on one machine.
"""
import argparse, datetime, json, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

import numpy as np
import torch


def machine(device: torch.device, threads: int) -> dict:
    from mesm_prem.demo import cpu_name   # the processor's model name, as the package's reports give it
    return dict(date=datetime.date.today().isoformat(), cpu=cpu_name(), cores=len(__import__('os').sched_getaffinity(0)), threads=threads,
                gpu=torch.cuda.get_device_name() if device.type == 'cuda' else None, torch=torch.__version__, python=platform.python_version())


def batch(Lv: int, device, seed: int = 0):
    "The official batch shape: rows repeat their video; moments 5-50 % of the video."
    g = torch.Generator().manual_seed(seed)
    groups = torch.tensor([3] * 8 + [2] * 4)
    rows = torch.repeat_interleave(torch.arange(len(groups)), groups)
    B, W = len(rows), 16
    video = torch.randn(len(groups), Lv, 2818, generator=g)[rows]
    vm = torch.ones(B, Lv, dtype=torch.bool)
    words = torch.randn(B, W, 512, generator=g); wm = torch.ones(B, W, dtype=torch.bool)
    ln = torch.randint(max(Lv // 20, 1), Lv // 2 + 1, (B,), generator=g)
    st = (torch.rand(B, generator=g) * (Lv - ln)).long()
    t = torch.arange(Lv)
    cm = (t[None] >= st[:, None]) & (t[None] < (st + ln)[:, None])
    nw = [torch.tensor([[st[i] / Lv, (st[i] + ln[i]) / Lv]]) for i in range(B)]
    unk = torch.zeros(B, W, dtype=torch.bool); lab = torch.randint(0, 1114, (B, W), generator=g)
    wt = torch.ones(B, W, dtype=torch.long); wt[:, 0] = 0; wt[:, -1] = 0
    mv = lambda x: x.to(device)
    tg = dict(norm_windows=[mv(x) for x in nw], video_mask=mv(vm), clip_mask=mv(cm), group_sizes=groups,
              pos_idx=None, neg_idx=None, words_label=mv(lab), saliency_label=None)
    inp = dict(video_feat=mv(video), video_mask=mv(vm), words_feat=mv(words), words_mask=mv(wm), group_sizes=groups,
               unknown_mask=mv(unk), clip_mask=mv(cm), row_video=mv(rows))
    return inp, wt, tg


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def measure(Lv: int, device: torch.device, steps: int, precision: str, dedup: bool, compile_: bool, ckpt: bool = False) -> dict:
    import dataclasses
    from mesm_prem.mesm import MESM, sample_masked_words
    from mesm_prem.experiments import PRESETS
    from mesm_prem.training import precision_autocast
    exp = PRESETS['mesm']['charades_sta_C+SF_C']
    model = MESM(dataclasses.replace(exp.model, dedup_video=dedup, grad_checkpoint=ckpt)).to(device)
    crit = exp.criterion()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4, fused=True)   # as the trainer's
    if compile_:   # every Transformer layer, in place (`compile_layers`, the loop's `train.compile`)
        from mesm_prem.attention import compile_layers
        compile_layers(model)
    fwd = model
    inp, wt, tg = batch(Lv, device)
    rng = np.random.RandomState(0)
    t_train, t_fwd, t_bwd, t_inf = [], [], [], []
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 2):
        model.train(); sync(device); t0 = time.perf_counter()
        with precision_autocast(precision, device):
            masked = sample_masked_words(inp['words_mask'].cpu(), wt, rng).to(device)
            out = fwd(**inp, masked_words=masked)
            losses, total = crit(out, tg, training=True)
        sync(device); t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True); total.backward(); sync(device); t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1); opt.step(); sync(device); t3 = time.perf_counter()
        if i >= 2: t_train.append(t3 - t0); t_fwd.append(t1 - t0); t_bwd.append(t2 - t1)
    train_peak = (torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda'
                  else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    model.eval()
    ev = {k: v for k, v in inp.items() if k not in ('unknown_mask', 'clip_mask')}
    with torch.no_grad():
        for i in range(steps + 2):
            sync(device); t0 = time.perf_counter()
            with precision_autocast(precision, device): fwd(**ev)
            sync(device)
            if i >= 2: t_inf.append(time.perf_counter() - t0)
    med = statistics.median
    return dict(Lv=Lv, rows=32, train_step_s=med(t_train), fwd_loss_s=med(t_fwd), bwd_s=med(t_bwd), inference_s=med(t_inf),
                train_range_s=[min(t_train), max(t_train)], peak_gib=train_peak, loss_finite=bool(torch.isfinite(total).item()),
                last_loss=float(total.detach()),
                params=sum(p.numel() for p in model.parameters()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--lengths', type=int, nargs='*', default=[48, 194])
    ap.add_argument('--precision', choices=['auto', 'fp32', 'bf16'], default='auto',
                    help='auto: bf16 on CUDA and on CPUs with bf16 units, else fp32 (default: %(default)s)')
    ap.add_argument('--no-dedup', action='store_true', help="project every row's clips, as the official code")
    ap.add_argument('--compile', action='store_true', help="torch.compile every Transformer layer (compile_layers, as train.compile)")
    ap.add_argument('--grad-checkpoint', action='store_true', help='activation checkpointing')
    ap.add_argument('--no-keep-blocks', action='store_true', help="glibc's default allocator thresholds")
    ap.add_argument('--out')
    ap.add_argument('--_one', type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    device = torch.device(a.device)
    if a._one is not None:   # worker: one length, result as JSON on stdout
        if device.type == 'cpu' and not a.no_keep_blocks:
            from mesm_prem.training import keep_large_blocks
            keep_large_blocks()
        print(json.dumps(measure(a._one, device, a.steps, a.precision, not a.no_dedup, a.compile, a.grad_checkpoint)))
        return
    rows = []
    for L in a.lengths:
        cmd = [sys.executable, __file__, '--device', a.device, '--threads', str(a.threads), '--steps', str(a.steps), '--_one', str(L)]
        cmd += ['--precision', a.precision] + ['--no-dedup'] * a.no_dedup + ['--compile'] * a.compile + ['--grad-checkpoint'] * a.grad_checkpoint
        cmd += ['--no-keep-blocks'] * a.no_keep_blocks
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode: sys.exit(f"Lv {L} failed:\n{r.stderr[-3000:]}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(f"Lv {L}: train step {rows[-1]['train_step_s']:.3f} s, inference {rows[-1]['inference_s']:.3f} s, peak {rows[-1]['peak_gib']:.2f} GiB", flush=True)
    from mesm_prem.training import autocast_dtype, bf16_matmul_units
    prec = 'bf16' if autocast_dtype(a.precision, device) == torch.bfloat16 else 'fp32'
    m = machine(device, a.threads) | (dict(bf16_matmul_units=bf16_matmul_units()) if device.type == 'cpu' else {})
    res = dict(machine=m, precision=prec, precision_setting=a.precision,
               dedup_video=not a.no_dedup, grad_checkpoint=a.grad_checkpoint, keep_large_blocks=device.type == 'cpu' and not a.no_keep_blocks,
               compile=a.compile, steps=a.steps, results=rows)
    tag = {('cpu', 'bf16'): '_bf16', ('cuda', 'fp32'): '_fp32'}.get((device.type, prec), '')
    out = Path(a.out or Path(__file__).parent/'results'/f"mesm_speed_{device.type}{tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + '\n')
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
