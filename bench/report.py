"""Write the documentation's results page (docs/performance.md) from the measurements in bench/results/.

    python bench/report.py            # (re)write docs/performance.md
    python bench/report.py --check    # exit 1 when docs/performance.md is not what the results give

Every figure comes from a JSON file that a bench script wrote, with the date and machine it was measured on.
"""
import argparse, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT/'bench'/'results'
OUT = ROOT/'docs'/'performance.md'


def load(name):
    p = RES/name
    return json.loads(p.read_text()) if p.exists() else None


def machine(m: dict) -> str:
    hw = m.get('gpu') or f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('threads', '?')} threads"
    return f"{m.get('date', '?')}, {hw}, torch {m.get('torch', '?')}"


def measured(stem: str, variants=('',)):
    "(result, machine line) of `<stem>_cpu<variant>.json` and `<stem>_cuda<variant>.json`, where measured."
    for dev in ('cpu', 'cuda'):
        for v in variants:
            r = load(f"{stem}_{dev}{v}.json")
            if r: yield r, machine(r['machine'])


def by_lv(r): return {x['Lv']: x for x in r['results']} if r else {}


def mesm_section(out: list):
    off, ours, ck, plain = (load(f) for f in ('mesm_speed_cpu_official.json', 'mesm_speed_cpu_fp32.json', 'mesm_speed_cpu_ckpt.json',
                                                'mesm_speed_cpu_nodedup.json'))
    ours = ours or load('mesm_speed_cpu.json')
    ck, plain = (x if same_cpu(x, ours) else None for x in (ck, plain))   # variants measured on another CPU: not beside these
    out += ["## MESM training step (CPU)", "",
            "One training step (forward with the masked-word branch, objective, backward, clipping, AdamW) at the official "
            "Charades-STA C+SF/C shapes: 32 sentence rows of 12 videos, 16 tokens, Lv clips (`bench/mesm_speed.py`). The official "
            "code (lntzm/MESM at 8501bde, CLIP text tower stubbed: `docs/official_mesm.md`, Timing the official code) "
            "was timed on the same machine in the "
            "same session, from a scratch folder outside the repository (neither it nor the script that ran it is part of this "
            "project). Medians of 10 steps after 2 warm-up steps; peak memory is the resident set size of a fresh process per length.", ""]
    if not (off and ours):
        out += ["*Not measured yet.*", ""]; return
    O, U, C, P = by_lv(off), by_lv(ours), by_lv(ck), by_lv(plain)
    out += ["| Lv | official step | ours | speed-up | ours, `grad_checkpoint` | speed-up | official peak | ours peak | ratio | `grad_checkpoint` peak | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for L in sorted(O):
        o, u, c = O[L], U.get(L), C.get(L)
        cells = [str(L), f"{o['train_step_s']:.2f} s"]
        cells += [f"{u['train_step_s']:.2f} s", f"{o['train_step_s'] / u['train_step_s']:.2f}x"] if u else ['-', '-']
        cells += [f"{c['train_step_s']:.2f} s", f"{o['train_step_s'] / c['train_step_s']:.2f}x"] if c else ['-', '-']
        cells += [f"{o['peak_gib']:.2f} GiB"]
        cells += [f"{u['peak_gib']:.2f} GiB", f"{u['peak_gib'] / o['peak_gib']:.2f}"] if u else ['-', '-']
        cells += [f"{c['peak_gib']:.2f} GiB", f"{c['peak_gib'] / o['peak_gib']:.2f}"] if c else ['-', '-']
        out.append('| ' + ' | '.join(cells) + ' |')
    out += ["", "| Lv | official inference | ours | speed-up |", "|---|---|---|---|"]
    for L in sorted(O):
        if L in U: out.append(f"| {L} | {O[L]['inference_s']:.3f} s | {U[L]['inference_s']:.3f} s | {O[L]['inference_s'] / U[L]['inference_s']:.2f}x |")
    if P:
        out += ["", "Where the time goes: our step with the per-row video projection (`dedup_video=False`) and glibc's default "
                "allocator thresholds, as the official code runs:", "", "| Lv | ours, per-row projection, default allocator | ours |", "|---|---|---|"]
        for L in sorted(P):
            if L in U: out.append(f"| {L} | {P[L]['train_step_s']:.2f} s | {U[L]['train_step_s']:.2f} s |")
    out += ["", f"Machines: official {machine(off['machine'])}; ours {machine(ours['machine'])}"
            + (f"; `grad_checkpoint` {machine(ck['machine'])}" if ck else '') + ".", ""]


def precision_section(out: list):
    "bf16 against fp32: MESM's step and inference side by side, and what bf16 does to the numbers."
    out += ["## Precision: bf16 against fp32", "",
            "The loop's `precision` setting (`train.precision`; `'auto'`: bf16 autocast on CUDA and on CPUs with bf16 "
            "matrix units (AMX); fp32 elsewhere) measured both ways on one machine, one run after the "
            "other: `bench/mesm_speed.py --precision fp32` and `--precision bf16` (the shapes of the section above), "
            "then `bench/precision_quality.py` (the parity fixture and a short synthetic training).", ""]
    shown = False
    for dev, (a_name, b_name) in (('cpu', ('mesm_speed_cpu_fp32.json', 'mesm_speed_cpu_bf16.json')),
                                  ('cuda', ('mesm_speed_cuda_fp32.json', 'mesm_speed_cuda.json'))):
        f32, b16 = load(a_name), load(b_name)
        if not (f32 and b16): continue
        shown = True
        F, B = by_lv(f32), by_lv(b16)
        out += [f"**MESM, {dev}** ({machine(b16['machine'])}"
                + (f"; bf16 matrix units: {'yes' if b16['machine']['bf16_matmul_units'] else 'no'}"
                   if 'bf16_matmul_units' in b16['machine'] else '') + ")", "",
                "| Lv | fp32 step | bf16 step | bf16 / fp32 | fp32 inference | bf16 inference | bf16 / fp32 | fp32 peak | bf16 peak |",
                "|---|---|---|---|---|---|---|---|---|"]
        for L in sorted(set(F) & set(B)):
            f, b = F[L], B[L]
            out.append(f"| {L} | {f['train_step_s']:.2f} s | {b['train_step_s']:.2f} s | {b['train_step_s'] / f['train_step_s']:.2f} | "
                       f"{f['inference_s']:.3f} s | {b['inference_s']:.3f} s | {b['inference_s'] / f['inference_s']:.2f} | "
                       f"{f['peak_gib']:.2f} GiB | {b['peak_gib']:.2f} GiB |")
        out.append("")
    q = load('precision_quality_cpu.json')
    if q:
        shown = True
        par, syn = q['parity'], q['synthetic']
        out += [f"**The numbers** ({machine(q['machine'])})", "",
                "The parity fixture (`tests/fixtures/mesm_parity_tiny`), eval forward and objective: the largest absolute "
                "difference to the official float32 outputs, and the losses (official: float32, the official code).", "",
                "| | pred_spans | pred_logits | saliency_scores | loss_span | loss_giou | loss_label | loss_saliency | total |",
                "|---|---|---|---|---|---|---|---|---|"]
        for p in ('fp32', 'bf16', 'official'):
            r = par[p]; d = r.get('max_abs_diff')
            cells = [f"{d[k]:.1e}" for k in ('pred_spans', 'pred_logits', 'saliency_scores')] if d else ['-'] * 3
            cells += [f"{r['losses'][k]:.4f}" for k in ('loss_span', 'loss_giou', 'loss_label', 'loss_saliency')]
            out.append(f"| {p} | " + ' | '.join(cells + [f"{r['total']:.4f}"]) + " |")
        out += ["", f"The synthetic benchmark (seed {syn['benchmark_seed']}), `synthetic_experiment` trained "
                f"{syn['epochs']} epochs at each precision, all else equal; the test split's metrics of the selected epoch:", "",
                "| precision | training loss per epoch | R1@0.5 | R1@0.7 | mIoU | mAP | wall time |", "|---|---|---|---|---|---|---|"]
        for p in ('fp32', 'bf16'):
            r = syn[p]; t = r['test']
            out.append(f"| {p} | {', '.join(f'{x:.3f}' for x in r['train_loss'])} | {t['MR-full-R1@0.5']:.2f} | "
                       f"{t['MR-full-R1@0.7']:.2f} | {t['MR-full-miou']:.2f} | {t['MR-full-mAP']:.2f} | {r['seconds']:.0f} s |")
        out.append("")
    if not shown: out += ["*Not measured yet.*", ""]
    notes = RES/'PRECISION.md'
    if notes.exists(): out += [notes.read_text().strip(), ""]


def prem_section(out: list):
    out += ["## PREM corpus search at TVR-val size", "",
            "The full-size TVR models (hidden 384, untrained: the speed does not depend on the weights) on a synthetic corpus of "
            "2,179 videos (113,868 clips of 4352-d image and 768-d subtitle features in float16 HDF5) and 10,895 queries "
            "(`bench/prem_search.py`): the corpus index (retriever over every video), the retrieval of every query, then the "
            "localizer on each query's top 10 videos, Eq 13, NMS and the VR/VCMR lists.", ""]
    for r, m in measured('prem_search', variants=('', '_bf16', '_fp32')):
        out += [f"**{m}** ({r.get('precision', 'fp32')}): {r['queries_searched']} queries searched",
                "", "| index | retrieval | localization | per query | end to end, all 10,895 queries |", "|---|---|---|---|---|",
                f"| {r['seconds_index']:.1f} s | {r.get('seconds_retrieve', float('nan')):.1f} s | {r.get('seconds_localize', float('nan')):.1f} s | "
                f"{r['seconds_per_query'] * 1000:.1f} ms | {r['seconds_end_to_end_all_10895']:.0f} s |", ""]


def scale_section(out: list):
    out += ["## Retrieval at corpus scale", "",
            "`FlatCorpusIndex` (float16 clip embeddings, one row per clip, memory-mapped) searched for the top 100 videos "
            "(`bench/corpus_scale.py`): TVR-shaped videos (mean 51.5 clips, 2 streams, d = 384, 1.58 kB per clip). One pass "
            "reads the whole index; the bandwidth-bound limit of a pass is its bytes over the memory bandwidth.", ""]
    for r, m in measured('corpus_scale'):
        out += [f"**{m}**, {r['machine'].get('ram_gib', '?')} GiB RAM, measured copy bandwidth {r['machine'].get('copy_bandwidth_gbs', '?')} GB/s", "",
                "| videos | index | read from | 1 query | 64 queries (per query) | working memory | bound here | bound on an H200 (4.3 TB/s) |",
                "|---|---|---|---|---|---|---|---|"]
        for x in r['results']:
            if 'skipped' in x: out.append(f"| {x['videos']:,} | {x['skipped']} | | | | | | |"); continue
            wm = x.get('peak_working_memory_gib_polled')
            out.append(f"| {x['videos']:,} | {x['index_bytes'] / 1e9:.2f} GB | {'disk' if x.get('from_disk') else 'page cache'} | "
                       f"{x['seconds_pass_q1']:.3f} s | {x['seconds_pass_q64']:.2f} s "
                       f"({x['seconds_per_query_q64'] * 1000:.1f} ms) | {'-' if wm is None else f'{wm:.2f} GiB'} | "
                       f"{x['bandwidth_bound_s_this_machine']:.3f} s | {x['bandwidth_bound_s_h200'] * 1000:.2f} ms |")
        out.append("")


def ann_section(out: list):
    r = load('corpus_scale_ann_cpu.json')
    if not r: return
    out += ["## Approximate search at corpus scale (faiss)", "",
            "`ANNCorpusIndex` (IVF-PQ per stream over the clip vectors, the candidates ranked by their faiss dots, the best "
            "`rescore` of them rescored exactly by Eq 6) against the exact flat search, on a TVR-shaped corpus with topic "
            "structure (`bench/corpus_scale.py --index ann`). Each operating point: lists probed, nearest clips a stream, "
            "videos rescored (all: every candidate). Recall@100: the share of the exact top 100 videos returned, over 64 "
            "queries; one query: the median over 8.", "",
            f"**{machine(r['machine'])}**, {r['machine'].get('ram_gib', '?')} GiB RAM", "",
            "| videos | clips | flat index | ANN index | build | exact, 64 queries | point | candidate videos a query "
            "| ANN, 1 query | ANN, 64 queries (per query) | recall@100 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in r['results']:
        if 'skipped' in x: out.append(f"| {x['videos']:,} | {x['skipped']} | | | | | | | | | |"); continue
        for i, p in enumerate(x['points']):
            head = (f"| {x['videos']:,} | {x['clips']:,} | {x['flat_bytes'] / 1e9:.2f} GB | {x['ann_bytes'] / 1e9:.3f} GB | "
                    f"{x['seconds_build']:.0f} s | {x['seconds_exact_q64']:.1f} s |") if i == 0 else "| | | | | | |"
            out.append(head + f" {p['nprobe']}, {p['clips_per_stream']}, {p['rescore'] or 'all'} | {p['candidates_per_query']:.0f} | "
                       f"{p['seconds_q1'] * 1000:.0f} ms | {p['seconds_q64']:.2f} s ({p['seconds_per_query_q64'] * 1000:.1f} ms) | "
                       f"{p['recall_at_100']:.3f} |")
    out.append("")


def same_cpu(a, b) -> bool:
    return bool(a and b) and a['machine'].get('cpu') == b['machine'].get('cpu')


def targets_section(out: list):
    """Each target of the speed work beside the official code's figure and the bound, met or missed by how much:
    computed from the result files (the reasons are in the notes below)."""
    fl, f32, b16, off = (load(f) for f in ('flops_cpu.json', 'mesm_speed_cpu_fp32.json', 'mesm_speed_cpu_bf16.json',
                                           'mesm_speed_cpu_official.json'))
    ps, cs, ann = load('prem_search_cpu.json'), load('corpus_scale_cpu.json'), load('corpus_scale_ann_cpu.json')
    gpu = any((RES/f).exists() for f in ('mesm_speed_cuda.json', 'prem_search_cuda.json'))
    out += ["## Targets", "",
            "Each target, the official code's figure where one exists, ours, and the bound: the FLOP the work counts "
            "(`bench/flops.py`) over this machine's peak matrix-product rate. Computed from the result files below.", ""]
    if fl: out += [f"Bounds: {machine(fl['machine'])}; peak products {fl['peak_gflops']['fp32']:.0f} GFLOP/s fp32, "
                   f"{fl['peak_gflops']['bf16']:.0f} GFLOP/s bf16 (4096 x 1024 x 1024); bf16 matrix units (AMX): "
                   f"{'yes' if fl['machine'].get('bf16_matmul_units') else 'no'}.", ""]
    out += ["| target | official code | ours | bound | status |", "|---|---|---|---|---|"]
    F, B, O = by_lv(f32), by_lv(b16), by_lv(off)
    for L in (48, 194):
        f, o = F.get(L), O.get(L)
        bound = f"{fl['mesm_step_gflop'][str(L)]:.0f} GFLOP: {fl['mesm_step_gflop'][str(L)] / fl['peak_gflops']['fp32']:.2f} s" if fl else '-'
        if f and o and same_cpu(f32, off):
            sp = o['train_step_s'] / f['train_step_s']
            status = f"{'met' if sp >= 2 else 'missed'}: {sp:.2f}x"
            ocell = f"{o['train_step_s']:.2f} s"
        else:
            status, ocell = 'official code not timed on this CPU', (f"{o['train_step_s']:.2f} s ({off['machine']['cpu']})" if o else '-')
        out.append(f"| MESM step fp32, Lv {L}: 2x the official | {ocell} | {f['train_step_s']:.2f} s | {bound} | {status} |" if f else
                   f"| MESM step fp32, Lv {L}: 2x the official | {ocell} | - | {bound} | not measured |")
    units = bool(b16 and b16['machine'].get('bf16_matmul_units'))
    for L in (48, 194):
        b, f = B.get(L), F.get(L)
        if not b: continue
        cell = f"{b['train_step_s']:.2f} s, {b['peak_gib']:.2f} GiB" + (f" ({b['train_step_s'] / f['train_step_s']:.2f}x the fp32 step)" if f else '')
        status = ('measured on a CPU with bf16 units: see the precision section' if units else
                  'not measurable here: this CPU has no bf16 matrix units')
        out.append(f"| MESM step bf16, Lv {L}: 3x the official, peak 0.5x, on a CPU with bf16 units | - | {cell} | - | {status} |")
    if ps:
        tot = ps['seconds_end_to_end_all_10895']
        units = bool(fl and fl['machine'].get('bf16_matmul_units'))
        if fl:
            g = fl['prem_tvr_val_gflop']; bd = g['total'] / fl['peak_gflops']['fp32']
            out.append(f"| PREM search, TVR val, fp32, on a CPU without bf16 units: within 1.5x of the bound | no public code | "
                       f"{tot:.0f} s | {g['total'] / 1e3:.0f} TFLOP: {bd:.0f} s | "
                       f"{'met' if tot <= 1.5 * bd else 'missed'}: {tot / bd:.3f}x the bound |")
            out.append(f"| PREM search, TVR val: 60 s on a 2-core CPU with bf16 units | no public code | {tot:.0f} s (fp32) | "
                       f"{g['total'] / fl['peak_gflops']['bf16']:.0f} s at this CPU's bf16 rate | "
                       f"{'see the PREM section' if units else 'not measurable here: no bf16 units'} |")
    if cs:
        rows = [x for x in cs['results'] if 'skipped' not in x and not x.get('from_disk')]
        if rows:
            worst = max(rows, key=lambda x: x['seconds_pass_q1'] / x['bandwidth_bound_s_this_machine'])
            ratio = worst['seconds_pass_q1'] / worst['bandwidth_bound_s_this_machine']
            out.append(f"| Flat corpus search, 1 query: within 3x of the bandwidth bound | - | {worst['seconds_pass_q1']:.3f} s at "
                       f"{worst['videos']:,} videos (the worst of {len(rows)} sizes) | {worst['bandwidth_bound_s_this_machine']:.3f} s | "
                       f"{'met' if ratio <= 3 else 'missed'}: {ratio:.2f}x |")
    if ann:
        rows = [x for x in ann['results'] if 'skipped' not in x]
        if rows:
            x = rows[-1]
            best = max(x['points'], key=lambda p: (p['recall_at_100'], -p['seconds_q1']))
            fast = [p for p in x['points'] if p['seconds_q1'] <= 0.1]
            cell = '; '.join(f"recall {p['recall_at_100']:.3f} in {p['seconds_q1'] * 1000:.0f} ms" for p in x['points'])
            ok = any(p['recall_at_100'] >= 0.99 for p in fast)
            out.append(f"| 1M videos: recall@100 0.99 in 100 ms a query on 2 cores | - | at {x['videos']:,} videos (the largest "
                       f"measured; ANN index {x['ann_bytes'] / 1e9:.2f} GB): {cell} | - | "
                       f"{'met' if ok else 'missed'} at {x['videos']:,} (best recall {best['recall_at_100']:.3f}); 1M not measured |")
    if not gpu:
        out.append("| GPU: MESM step 3x the official, PREM search 5 s (H200) | - | - | - | not measured: no GPU was lent |")
    out.append("")
    t = RES/'TARGETS.md'
    if t.exists(): out += [t.read_text().strip(), ""]


def long_video_section(out: list):
    "R1@0.5 past the trained length: the predictor's three readings of a long video (`bench/long_video.py`)."
    r = load('long_video_cpu.json')
    out += ["## Long videos: pooling, all clips, or sliding windows", "",
            "How `MESMPredictor` reads a video longer than the model's trained length (`data.max_video_l` clips; "
            "`long_video` in notebook 14, `--long-video` in the CLI), measured by `bench/long_video.py`: a model trained "
            "on the synthetic benchmark (videos of 16-48 s, one clip a second, moments of 3-12 s), then tested on videos "
            "of 0.75 L to L seconds written by the same generator, with the same moments and one described event per "
            "18-36 s. `slide` is the default window (the training videos' median length) at half-window strides, merged "
            "by NMS at IoU 0.7.", ""]
    if not r:
        out += ["*Not measured yet.*", ""]; return
    names = list(next(iter(r['lengths'].values())))
    label = lambda n: (f"slide, {r['default_window']} clips (default)" if n == 'slide' else
                       f"slide, {n.split('_')[1]} clips" if n.startswith('slide_') else
                       f"pool to {r['max_video_l']} (official)" if n == 'pool' else 'full (all clips)')
    out += [f"{machine(r['machine'])}; trained {r['epochs']} epochs ({r['train_seconds']:.0f} s), benchmark seed "
            f"{r['benchmark_seed']}, trained length {r['max_video_l']} clips; in-distribution test split: R1@0.5 "
            f"{r['in_distribution_test']['MR-full-R1@0.5']:.2f}.", "",
            "R1@0.5 (R1@0.7, mIoU) by the longest test video L, and milliseconds per sentence:", "",
            "| reading | " + ' | '.join(f"L = {L} s" for L in r['lengths']) + " |",
            "|---|" + "---|" * len(r['lengths'])]
    for n in names:
        cells = []
        for L, row in r['lengths'].items():
            x = row[n]
            cells.append(f"{x['MR-full-R1@0.5']:.1f} ({x['MR-full-R1@0.7']:.1f}, {x['MR-full-miou']:.1f}); "
                         f"{1e3 * x['seconds_per_sentence']:.0f} ms")
        out.append(f"| {label(n)} | " + ' | '.join(cells) + " |")
    n_sent = ', '.join(f"{row[names[0]]['sentences']}" for row in r['lengths'].values())
    out += ["", f"Sentences per length: {n_sent}.", ""]
    notes = RES/'LONG_VIDEO.md'
    if notes.exists(): out += [notes.read_text().strip(), ""]


def prem_norm_section(out: list):
    "Eq 13's P_st/P_ed softmaxed per video or jointly over the top videos (`bench/prem_norm.py`)."
    r = load('prem_norm_cpu.json')
    out += ["## PREM Eq 13: boundary probabilities per video or joint", "",
            "Which softmax Eq 13's P_st, P_ed take at search time (`eval.norm`): over each retrieved video's clips "
            "(`'video'`, as CONQUER searches) or over all clips of the query's top 10 videos (`'joint'`, as Shared-Norm, "
            "Eq 11, trains them). Measured by `bench/prem_norm.py` on the synthetic corpus's validation split: per seed, "
            "one retriever and two localizers (trained with and without Shared-Norm, `model.shared_norm`), each stage "
            "keeping its last epoch (`train.select='last'`, so no checkpoint was chosen under either normalisation); "
            "each localizer searched twice from one retrieval. SVMR localises in the right video alone, where both "
            "are the same softmax.", ""]
    if not r:
        out += ["*Not measured yet.*", ""]; return
    ms = lambda x: f"{x['mean']:.2f} ± {x['std']:.2f}"
    dif = lambda x: f"{x['mean']:+.2f} ({x['min']:+.2f} to {x['max']:+.2f})"
    vk = [f'VCMR-{t}-r{k}' for t in ('0.5', '0.7') for k in (1, 10, 100)]
    sk = [f'SVMR-{t}-r{k}' for t in ('0.5', '0.7') for k in (1, 10)]
    head = lambda ks: ' | '.join(f"{k.split('-')[0]} R@{k.split('-r')[1]} ({k.split('-')[1]})" for k in ks)
    out += [f"{machine(r['machine'])}; benchmark seed {r['benchmark_seed']}, validation split ({r['val_videos']} videos, "
            f"{r['val_queries']} queries); training seeds {', '.join(map(str, r['seeds']))}; retriever "
            f"{r['retriever_epochs']} epochs, localizer {r['localizer_epochs']}; {r['seconds']} s in all. Mean ± standard "
            "deviation over the seeds; the difference joint - video is paired (the same models), with its range over "
            "the seeds.", "", f"| localizer trained | `eval.norm` | {head(vk)} |", "|---|---|" + "---|" * len(vk)]
    names = {'shared_norm=True': 'with Shared-Norm', 'shared_norm=False': 'without Shared-Norm'}
    for key, s in r['summary'].items():
        for n in ('video', 'joint'):
            out.append(f"| {names[key]} | {n} | " + ' | '.join(ms(s['VCMR'][n][k]) for k in vk) + " |")
        out.append(f"| {names[key]} | joint - video | " + ' | '.join(dif(s['VCMR_joint_minus_video'][k]) for k in vk)
                   + " |")
    out += ["", f"| localizer trained | VR R@1 | VR R@10 | {head(sk)} |", "|---|---|---|" + "---|" * len(sk)]
    for key, s in r['summary'].items():
        out.append(f"| {names[key]} | {ms(s['VR']['VR-r1'])} | {ms(s['VR']['VR-r10'])} | "
                   + ' | '.join(ms(s['SVMR'][k]) for k in sk) + " |")
    out.append("")
    notes = RES/'PREM_NORM.md'
    if notes.exists(): out += [notes.read_text().strip(), ""]


def render() -> str:
    out = ["# Performance", "",
           "Measured figures, each with the date and machine it came from. These machines are noisy: compare ratios measured "
           "side by side in one session, not figures across machines. `python bench/report.py` writes this page from "
           "`bench/results/*.json`.", ""]
    targets_section(out)
    mesm_section(out); precision_section(out); prem_section(out); scale_section(out); ann_section(out)
    long_video_section(out); prem_norm_section(out)
    notes = RES/'NOTES.md'
    if notes.exists(): out += [notes.read_text().strip(), ""]
    return '\n'.join(out).rstrip() + '\n'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true')
    a = ap.parse_args()
    text = render()
    if a.check:
        if not OUT.exists() or OUT.read_text() != text: sys.exit(f"{OUT.relative_to(ROOT)} is stale: run python bench/report.py")
        return
    OUT.write_text(text); print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == '__main__':
    main()
