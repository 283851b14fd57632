"The README's main job (`mesm-prem demo`, at the quick size), `predict`, and the three-line Python API on its run folders."
import json

import numpy as np
import pytest

from test_cli import cli

REPORT = ['metrics.json', 'training_curves.png', 'moment_timeline.png', 'prem_retrieval.png', 'summary.md']


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo') / 'demo'
    r = cli('demo', '--quick', '--out', out, '--quiet', '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def _run_dtype(run, *section):
    "The autocast dtype of a run folder's precision on the CPU (None: float32)."
    from mesm_prem.training import autocast_dtype
    cfg = json.loads((run / 'config.json').read_text())
    for k in section: cfg = cfg[k]
    return autocast_dtype(cfg['precision'], 'cpu')


def test_demo_writes_the_report(demo):
    out, stdout = demo
    for f in REPORT:
        assert (out / 'report' / f).stat().st_size > 0, f
    for f in REPORT[1:4]:
        assert (out / 'report' / f).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', f
    rep = json.loads((out / 'report' / 'metrics.json').read_text())
    assert rep['command'] == f'mesm-prem demo --out {out} --quick' and rep['machine']['device'] == 'cpu'
    assert rep['mesm']['metrics'] == json.loads((out / 'runs' / 'mesm' / 'results.json').read_text())['results']['test']
    assert rep['prem']['metrics'] == json.loads((out / 'runs' / 'prem' / 'results.json').read_text())['results']['val']
    assert set(rep['timings_s']) == {'benchmark', 'mesm', 'prem', 'report', 'total'}
    assert '## MESM' in stdout and '## PREM' in stdout and f"| MESM | {rep['mesm']['metrics']['MR-full-R1@0.5']:.2f} |" in stdout


def test_predict_command(demo, tmp_path):
    out, _ = demo
    ann = (out / 'benchmark' / 'vmr' / 'charades_sta_test.txt').read_text().splitlines()
    vid = ann[0].split()[0]
    n = sum(l.split()[0] == vid for l in ann)
    r = cli('predict', out / 'runs' / 'mesm', '--video', vid, '--split', 'test', '--top-k', '3', '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert len(rows) == n and all(row['vid'] == vid and len(row['pred_relevant_windows']) == 3 for row in rows)
    for row in rows:
        assert all(0 <= s <= e <= row['duration'] for s, e, _ in row['pred_relevant_windows'])
    # the run's own test submission holds the same windows for these sentences: the same top-3 scores, and every
    # predicted window among its windows with that score (the quick model ties scores, and ties may order either way).
    # In bf16 (the run's precision 'auto' on a CPU with bf16 units) the scores also depend on the batch a sentence is
    # in (the submission's batches hold other videos and are longer): the same up to bf16 rounding, and the near-tied
    # windows of the quick model may then be others
    sub = {d['qid']: d for d in map(json.loads, (out / 'runs' / 'mesm' / 'predictions' / 'test_submission.jsonl').read_text().splitlines())}
    bf16 = _run_dtype(out / 'runs' / 'mesm', 'train') is not None
    for row in rows:
        mine, theirs = np.array(row['pred_relevant_windows']), np.array(sub[int(row['qid'])]['pred_relevant_windows'])
        np.testing.assert_allclose(mine[:, 2], theirs[:3, 2], atol=1e-2 if bf16 else 1e-3)
        if not bf16:
            for w in mine: assert (np.abs(theirs - w).max(1) <= 1e-3).any(), (w, theirs)
    r = cli('predict', out / 'runs' / 'mesm', '--video', vid, '--queries', rows[0]['qid'], '--out', tmp_path / 'p.jsonl', '--device', 'cpu')
    assert r.returncode == 0 and len((tmp_path / 'p.jsonl').read_text().splitlines()) == 1
    r = cli('predict', out / 'runs' / 'mesm', '--video', 'no_such_video', '--device', 'cpu')
    assert r.returncode == 2 and "'no_such_video' is not in the run's video features" in r.stderr


def test_three_line_apis(demo):
    out, _ = demo
    from mesm_prem.run_mesm import MESMPredictor
    from mesm_prem.run_prem import PREMSearcher
    # MESM, three lines
    p = MESMPredictor(out / 'runs' / 'mesm', device='cpu')
    vid = (out / 'benchmark' / 'vmr' / 'charades_sta_test.txt').read_text().split()[0]
    res = p.predict_video(vid, top_k=2)
    assert res and all(len(r['pred_relevant_windows']) == 2 and r['query'] for r in res)
    # PREM, three lines: query ids, or their token features, give the run's own val submission
    s = PREMSearcher(out / 'runs' / 'prem', device='cpu'); s.index(split='val')
    sub = json.loads((out / 'runs' / 'prem' / 'predictions' / 'val_submission.json').read_text())
    qids = [str(d['desc_id']) for d in sub['VCMR'][:5]]
    by_id = s.search(qids, top_k=3)
    by_feat = s.search([s.inputs.text[q].feat for q in qids], top_k=3)
    assert by_id == by_feat
    idx2vid = {i: v for v, i in sub['video2idx'].items()}
    for got, want in zip(by_id, sub['VCMR'][:5]):
        assert [g[0] for g in got] == [idx2vid[w[0]] for w in want['predictions'][:3]]
        np.testing.assert_allclose([g[1:3] for g in got], [w[1:3] for w in want['predictions'][:3]], atol=1e-3)
