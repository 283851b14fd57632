"""Long videos: how much of MESM's R1@0.5 each of the predictor's readings keeps past the length it was trained on.

    python bench/long_video.py [--threads 2] [--epochs 8] [--seed 0] [--lengths 48 128 256 512]
                               [--windows 64 32] [--out bench/results/long_video_cpu.json]

1. A model is trained on the synthetic benchmark (`mesm-prem synth`, seed `--seed`): videos of 16-48 s at one clip
   a second, moments of 3-12 s, `data.max_video_l` 64, `synthetic_experiment` for `--epochs` epochs, selected on
   its validation split.
2. For each length L in `--lengths`, 40 test videos of 0.75 L to L seconds are written by the same generator (the
   same seed, hence the same words and visual prototypes), with the moments of the training videos (3-12 s) and one
   described event per 24 s (at least 1 to 4, as in training) plus 1-2 distractors that share a word with one.
3. Every sentence is localised by `MESMPredictor(run, long_video=...)`: 'pool' (the official reading: average
   pooling to 64 clips), 'full' (all clips at once), and 'slide' with each window of `--windows` (0: the default
   window, the training videos' median length; stride half the window, merged by NMS at IoU 0.7). Scored by
   `eval_vmr`: R1@0.5, R1@0.7, mIoU, and seconds per sentence.

The shortest length (48 s) is within the trained length, where the readings coincide. Not a test: a measurement,
recorded with the date and machine.
"""
import argparse, json, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
KEYS = ('MR-full-R1@0.5', 'MR-full-R1@0.7', 'MR-full-miou')


def long_test_set(root: Path, seed: int, length: int) -> Path:
    "Test videos of 0.75 L to L seconds from the training benchmark's generator; returns their `vmr/` folder."
    from mesm_prem.synthetic import SynthConfig, write_synthetic_benchmark
    events = (max(1, length // 36), max(4, length // 18))
    cfg = SynthConfig(seed=seed, vmr_videos=dict(test=40), vmr_duration=(0.75 * length, float(length)),
                      vmr_sentences=events, vcmr_videos=dict(train=2, val=1, test_public=1))
    write_synthetic_benchmark(root, cfg)
    return root/'vmr'


def score(run: Path, data: Path, **reading) -> dict:
    "Metrics of `eval_vmr` and seconds per sentence for every test sentence of `data`, read as `reading` says."
    from mesm_prem.metrics import eval_vmr
    from mesm_prem.run_mesm import MESMPredictor, ground_truth, read_split
    pred = MESMPredictor(run, device='cpu', data_root=str(data), **reading)
    ann = read_split(pred.exp, 'test')
    pred.predict_video(ann.queries[0].vid, splits=['test'], top_k=10)             # warm-up, not timed
    t0, sub = time.perf_counter(), []
    for vid in ann.videos: sub += pred.predict_video(vid, splits=['test'], top_k=10)
    secs = (time.perf_counter() - t0) / len(ann)
    m = eval_vmr(sub, ground_truth(ann))['brief']
    return dict({k: m[k] for k in KEYS}, seconds_per_sentence=round(secs, 4), sentences=len(ann))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=8)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--lengths', type=int, nargs='+', default=[48, 128, 256, 512])
    ap.add_argument('--windows', type=int, nargs='+', default=[0, 64, 16], help='0: the default window')
    ap.add_argument('--out')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from mesm_speed import machine
    from mesm_prem.experiments import synthetic_experiment
    from mesm_prem.run_mesm import train_mesm
    from mesm_prem.synthetic import SynthConfig, write_synthetic_benchmark
    res = dict(machine=machine(torch.device('cpu'), a.threads), epochs=a.epochs, benchmark_seed=a.seed, lengths={})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic_benchmark(tmp/'bench', SynthConfig(seed=a.seed))
        exp = synthetic_experiment(tmp/'bench', epochs=a.epochs)
        res['max_video_l'] = exp.data.max_video_l
        t0 = time.perf_counter()
        trained = train_mesm(exp, tmp/'run', device='cpu', progress=False)
        res['train_seconds'] = round(time.perf_counter() - t0, 1)
        res['in_distribution_test'] = {k: trained['test'][k] for k in KEYS}
        from mesm_prem.run_mesm import typical_clips
        res['default_window'] = typical_clips(exp)
        print('trained:', json.dumps(res['in_distribution_test']), 'window', res['default_window'], flush=True)
        readings = dict(pool=dict(long_video='pool'), full=dict(long_video='full'),
                        **{f"slide_{w}" if w else 'slide': dict(long_video='slide', window=w or None) for w in a.windows})
        for L in a.lengths:
            data = long_test_set(tmp/f"long_{L}", a.seed, L)
            res['lengths'][str(L)] = row = {}
            for name, reading in readings.items():
                row[name] = score(tmp/'run', data, **reading)
                print(L, name, json.dumps(row[name]), flush=True)
    out = Path(a.out or Path(__file__).parent/'results'/'long_video_cpu.json')
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + '\n')
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
