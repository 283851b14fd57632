"The mesm-prem command, run as a user would run it."
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import FIX

SUBCOMMANDS = ['demo', 'synth', 'data-stats', 'convert', 'evaluate', 'convert-official', 'train', 'predict', 'search']


def cli(*args, cwd=None):
    code = 'import sys; from mesm_prem.cli import main; sys.argv[0] = "mesm-prem"; sys.exit(main())'
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_help(capsys):
    r = cli('--help')                                            # one real process; the subcommands' help in this one
    assert r.returncode == 0 and all(s in r.stdout for s in SUBCOMMANDS)
    from mesm_prem.cli import main
    for s in SUBCOMMANDS:
        assert main([s, '--help']) == 0
        out = capsys.readouterr().out
        assert out.startswith(f'usage: mesm-prem {s}'), out[:200]


def test_console_script_is_installed():
    import shutil
    exe = shutil.which('mesm-prem')
    assert exe, 'pip install -e . should install the mesm-prem console script'
    assert subprocess.run([exe, '--help'], capture_output=True).returncode == 0


def test_data_stats_on_benchmark(synth):
    root, man = synth
    v = root / 'vmr'
    r = cli('data-stats', v / 'charades_sta_train.txt', '--features', v / 'clip_image.hdf5', v / 'slowfast.hdf5',
            '--text', v / 'text' / 'charades_sta_train.h5', '--json')
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    n = man['vmr']['splits']['train']
    assert (s['queries'], s['videos']) == (n['queries'], n['videos'])
    assert [f['dim'] for f in s['features']] == [32, 48] and all(f['missing'] == 0 for f in s['features'])
    assert s['text']['covered'] == n['queries']
    c = root / 'vcmr'
    r = cli('data-stats', c / 'tvr_val_release.jsonl', '--video2dur', c / 'tvr_video2dur_idx.json',
            '--features', c / man['vcmr']['video_features'][0], '--subtitles', c / man['vcmr']['subtitles'])
    assert r.returncode == 0 and 'query types' in r.stdout and 'synth_sub_cl-1.5.h5: D=32' in r.stdout


def test_synth(tmp_path):
    r = cli('synth', tmp_path / 'b', '--seed', 4)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'b' / 'benchmark.json').exists() and 'vcmr/tvr_train_release.jsonl' in r.stdout


def test_convert(tmp_path):
    src = tmp_path / 'feats'; src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3): np.savez(src / f'v{i}.npz', features=rng.normal(size=(4 + i, 6)))
    r = cli('convert', src, tmp_path / 'out.h5', '--quiet')
    assert r.returncode == 0 and 'wrote 3 videos' in r.stdout
    with h5py.File(tmp_path / 'out.h5') as f:
        assert f['v2'].shape == (6, 6) and np.allclose(f['v1'][()], np.load(src / 'v1.npz')['features'])


@pytest.mark.parametrize('args,message', [
    (['data-stats', 'missing.txt', '--format', 'charades_sta', '--durations', FIX / 'Charades_v1_test_excerpt.csv'],
     'annotation file not found: missing.txt'),
    (['data-stats', FIX / 'charades_sta_test_excerpt.txt', '--durations', FIX / 'Charades_v1_test_excerpt.csv', '--policy', 'strict'],
     "charades_sta_test_excerpt.txt:20: end 19.9 is after the video's end (18.58 s)"),
    (['data-stats', FIX / 'charades_sta_test_excerpt.txt'], 'Charades-STA needs the video durations'),
    (['convert', 'no_such_dir', 'x.h5'], 'feature folder not found: no_such_dir'),
])
def test_bad_input_exits_2_with_a_message(args, message):
    r = cli(*args)
    assert r.returncode == 2 and message in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_corrupt_feature_file(tmp_path):
    good = tmp_path / 'good.h5'
    with h5py.File(good, 'w') as f: f['x'] = np.ones((100, 64), 'f4')
    bad = tmp_path / 'bad.h5'; bad.write_bytes(good.read_bytes()[:2048])
    r = cli('data-stats', FIX / 'tvr_val_excerpt.jsonl', '--features', bad)
    assert r.returncode == 2 and 'bad.h5: cannot open as HDF5 (truncated or corrupt?)' in r.stderr


GOLD = FIX / 'qvh_golden'


def test_evaluate_vmr_golden(tmp_path):
    "The golden case: Moment-DETR's sample predictions give exactly the numbers its evaluator printed."
    r = cli('evaluate', 'vmr', '--submission', GOLD / 'sample_val_preds.jsonl.gz', '--gt', GOLD / 'highlight_val_release.jsonl.gz',
            '--official', '--out', tmp_path / 'm.json')
    assert r.returncode == 0, r.stderr
    golden = json.loads((GOLD / 'sample_val_preds_metrics_raw.json').read_text())
    assert json.loads(r.stdout) == golden == json.loads((tmp_path / 'm.json').read_text())


def test_evaluate_vcmr(tmp_path):
    gt = tmp_path / 'gt.jsonl'
    gt.write_text(''.join(json.dumps(d) + '\n' for d in [
        dict(desc_id=1, vid_name='A', ts=[0, 10], type='v', duration=60, desc='x'),
        dict(desc_id=2, vid_name='B', ts=[10, 20], type='t', duration=60, desc='y')]))
    sub = dict(video2idx={'A': 0, 'B': 1}, VCMR=[dict(desc_id=1, predictions=[[0, 0, 9, 1.]]), dict(desc_id=2, predictions=[[0, 10, 20, 1.]])])
    (tmp_path / 's.json').write_text(json.dumps(sub))
    r = cli('evaluate', 'vcmr', '--submission', tmp_path / 's.json', '--gt', gt)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m['VCMR']['0.7-r1'] == 50.0 and m['VCMR_by_type']['v-0.7-r1'] == 100.0 and m['VCMR_by_type']['t-0.5-r100'] == 0.0
    sub['VCMR'] = sub['VCMR'][:1]
    (tmp_path / 's.json').write_text(json.dumps(sub))
    r = cli('evaluate', 'vcmr', '--submission', tmp_path / 's.json', '--gt', gt)
    assert r.returncode == 2 and 'VCMR: 1 ground-truth queries are not in the submission' in r.stderr


def test_convert_official(tmp_path):
    "An official-layout checkpoint (the parity fixture's weights) converts; the run folder loads with weights_only."
    import argparse, torch
    from safetensors.torch import load_file
    sd = load_file(FIX / 'mesm_parity_tiny' / 'state_dict.safetensors')
    torch.save({'model': sd, 'epoch': 1, 'opt': argparse.Namespace(dataset_name='charades', nheads=4)}, tmp_path / 'm.ckpt')
    r = cli('convert-official', tmp_path / 'm.ckpt', tmp_path / 'run')
    assert r.returncode == 0, r.stderr
    w = torch.load(tmp_path / 'run' / 'checkpoints' / 'best.pt', weights_only=True)
    cfg = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert cfg['model']['hidden'] == 32 and cfg['model']['official_mask'] and 'query_anchors.weight' in w
    (tmp_path / 'bad.ckpt').write_bytes(b'\x80\x02garbage')
    r = cli('convert-official', tmp_path / 'bad.ckpt', tmp_path / 'run2')
    assert r.returncode == 2 and 'bad.ckpt: cannot read as a PyTorch checkpoint' in r.stderr


def test_train_mesm_on_the_synthetic_benchmark(synth, tmp_path):
    root, man = synth
    r = cli('train', 'mesm', '--synthetic', root, '--set', 'train.epochs=1', 'model.ss=false', '--run-dir', tmp_path / 'run', '--quiet')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert 'MR-full-mAP' in res['test'] and 'MR-full-R1@0.5' in res['test']
    cfg = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert cfg['train']['epochs'] == 1 and cfg['model']['ss'] is False
    for f in ('checkpoints/best.pt', 'checkpoints/last.pt', 'checkpoints/state.pt', 'metrics.jsonl', 'plots/curves.png',
              'predictions/test_submission.jsonl', 'predictions/test_metrics.json', 'results.json'):
        assert (tmp_path / 'run' / f).exists(), f
    r = cli('evaluate', 'vmr', '--submission', tmp_path / 'run' / 'predictions' / 'test_submission.jsonl', '--gt', tmp_path / 'gt.jsonl')
    assert r.returncode == 2 and 'file not found' in r.stderr
    r = cli('train', 'mesm', '--synthetic', root, '--set', 'train.epochz=1', '--run-dir', tmp_path / 'run2')
    assert r.returncode == 2 and "unknown key 'epochz'" in r.stderr


def test_train_prem_and_search(synth, tmp_path):
    root, man = synth
    r = cli('train', 'prem', '--synthetic', root, '--set', 'train.retriever.epochs=1', 'train.localizer.epochs=1', 'model.gate=concat',
            '--run-dir', tmp_path / 'run', '--quiet', '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert {'VR-r10', 'VCMR-0.7-r1', 'SVMR-0.5-r10'} <= set(res['val'])
    run = tmp_path / 'run'
    assert json.loads((run / 'config.json').read_text())['model']['gate'] == 'concat'
    for f in ('retriever/checkpoints/best.pt', 'localizer/checkpoints/best.pt', 'retriever/plots/curves.png', 'localizer/metrics.jsonl',
              'hard_negatives.json', 'predictions/val_submission.json', 'predictions/val_metrics.json', 'results.json'):
        assert (run / f).exists(), f
    r = cli('search', run, '--split', 'val', '--out', tmp_path / 'sub.json', '--index', tmp_path / 'index.pt', '--quiet', '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['metrics'] == res['val'] and (tmp_path / 'index.pt').exists()          # the same models give the same search
    r = cli('evaluate', 'vcmr', '--submission', tmp_path / 'sub.json', '--gt', root / 'vcmr' / 'tvr_val_release.jsonl')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['VCMR']['0.7-r1'] == res['val']['VCMR-0.7-r1']
    r = cli('search', run, '--split', 'test_public', '--out', tmp_path / 'test.json', '--quiet', '--device', 'cpu')   # hidden answers
    assert r.returncode == 0, r.stderr
    sub = json.loads((tmp_path / 'test.json').read_text())
    assert 'SVMR' not in sub and len(sub['VCMR']) == man['vcmr']['splits']['test_public']['queries']
    r = cli('train', 'prem', '--preset', 'charades', '--run-dir', tmp_path / 'x')
    assert r.returncode == 2 and "unknown prem preset 'charades'" in r.stderr


# the switches of MESM Table 5 as the paper ticks them: (FW-MESM, SS-MESM, L_enc)
TABLE5 = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1)]


def test_reproduce_an_ablation_table_on_the_synthetic_benchmark(tmp_path):
    "`reproduce mesm-5`: all seven rows of MESM's Table 5 trained on the quick synthetic benchmark, then compared."
    out = tmp_path / 'mesm-5'
    r = cli('reproduce', 'mesm-5', '--synthetic', tmp_path / 'bench', '--quick', '--out', out, '--quiet',
            '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    cmp = json.loads((out / 'comparison.json').read_text())
    assert (cmp['table'], cmp['data'], cmp['epochs'], len(cmp['rows'])) == ('mesm-5', 'synthetic', 1, 7)
    for (fw, ss, enc), row in zip(TABLE5, cmp['rows']):
        cfg = json.loads((out / f"row{row['row']}" / 'config.json').read_text())
        assert (cfg['model']['fw'], cfg['model']['ss'], cfg['loss']['use_ss'], cfg['loss']['use_enc']) == \
            (bool(fw), bool(ss), bool(ss), bool(enc)), row['label']
        assert all(0 <= x <= 100 for x in row['ours']), row
        assert row['diff'] == [round(o - p, 2) for o, p in zip(row['ours'], row['paper'])]
        full = cmp['rows'][6]['ours']
        assert row['ours_change'] == [round(o - f, 2) for o, f in zip(row['ours'], full)]
    text = (out / 'comparison.md').read_text()
    assert text.startswith('# MESM Table 5') and '| 7 | FW-MESM + SS-MESM + L_enc (full) | 61.24 / ' in text
    assert text.rstrip() == r.stdout.rstrip()
    assert 'mesm-5 row 7/7' in r.stderr


def test_reproduce_lists_and_refuses(tmp_path):
    r = cli('reproduce', '--list')
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 13 and 'prem-6  PREM Table 6' in r.stdout
    r = cli('reproduce', 'mesm-7', '--list')
    assert r.returncode == 0 and '--set data.root=DATA/data/charades model.ss_layers=6 --run-dir' in r.stdout
    for args, msg in ((['mesm-8'], "unknown table 'mesm-8'"), (['mesm-1', '--rows', '3'], 'is not ours'),
                      (['mesm-5', '--quick'], '--quick: only with --synthetic'), ([], 'give a TABLE'),
                      (['mesm-5', '--synthetic', tmp_path, '--set', 'model.fw=maybe'], 'model.fw'),
                      (['mesm-5', '--epochs', '3'], '--epochs goes with --synthetic'),
                      (['mesm-5', '--out', __file__], 'not a folder'),
                      (['prem-4', '--rows', '10'], 'needs ranklists: HERO')):
        r = cli('reproduce', *args)
        assert r.returncode != 0 and msg in r.stderr and 'Traceback' not in r.stderr, (args, r.stderr)


def test_train_prem_retriever_from_and_ranklists(synth, tmp_path):
    "--retriever-from: a localizer ablation on a finished run's retriever; ranklists instead of a retriever."
    root, man = synth
    base = ['--synthetic', root, '--quiet', '--device', 'cpu', '--set', 'train.retriever.epochs=1', 'train.localizer.epochs=1']
    r = cli('train', 'prem', *base, '--run-dir', tmp_path / 'full')
    assert r.returncode == 0, r.stderr
    r = cli('train', 'prem', *base, 'model.loc_modalities=video', '--run-dir', tmp_path / 'video', '--retriever-from', tmp_path / 'full')
    assert r.returncode == 0, r.stderr
    best = lambda run: (run / 'retriever' / 'checkpoints' / 'best.pt').read_bytes()
    assert best(tmp_path / 'video') == best(tmp_path / 'full')
    assert json.loads((tmp_path / 'video' / 'config.json').read_text())['model']['loc_modalities'] == 'video'
    r = cli('train', 'prem', *base, 'model.hidden=32', '--run-dir', tmp_path / 'x', '--retriever-from', tmp_path / 'full')
    assert r.returncode != 0 and 'its retriever was trained with model.hidden=64, this run has model.hidden=32' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / 'x').exists()
    r = cli('train', 'mesm', '--synthetic', root, '--run-dir', tmp_path / 'm', '--retriever-from', tmp_path / 'full')
    assert r.returncode != 0 and '--retriever-from: goes with train prem' in r.stderr
    # the full run's rankings as first-stage ranklists (its hard negatives, its validation VR lists): no retriever
    rl = tmp_path / 'rl_train.json'
    rl.write_text(json.dumps({k: [[v, 1 - i / 100] for i, v in enumerate(r_)]
                              for k, r_ in json.loads((tmp_path / 'full' / 'hard_negatives.json').read_text()).items()}))
    r = cli('train', 'prem', *base, f'data.ranklists.train={rl}', 'train.retriever.epochs=0',
            f"data.ranklists.val={tmp_path / 'full' / 'predictions' / 'val_submission.json'}", '--run-dir', tmp_path / 'rl')
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / 'rl' / 'retriever').exists()
    r = cli('search', tmp_path / 'rl', '--split', 'val', '--out', tmp_path / 'sub.json', '--quiet', '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'sub.json').read_text() == (tmp_path / 'rl' / 'predictions' / 'val_submission.json').read_text()
    r = cli('search', tmp_path / 'rl', '--split', 'test_public', '--out', tmp_path / 't.json', '--quiet', '--device', 'cpu')
    assert r.returncode != 0 and 'this run has no retriever (train.retriever.epochs=0)' in r.stderr
