"PREM learns on the synthetic corpus in a short CPU run: both stages clearly beat random retrieval and localisation."
import json

import torch

from mesm_prem.synthetic import write_synthetic_benchmark
from mesm_prem.corpus import PREMInputs
from mesm_prem.run_prem import random_baseline, train_prem
from mesm_prem.experiments import synthetic_prem_experiment


def test_prem_beats_the_random_baseline(tmp_path):
    torch.set_num_threads(2)
    write_synthetic_benchmark(tmp_path / 'bench')
    exp = synthetic_prem_experiment(tmp_path / 'bench')
    res = train_prem(exp, tmp_path / 'run', device='cpu', progress=False)['val']
    base = random_baseline(PREMInputs(exp), 'val')
    keys = ('VR-r1', 'VR-r10', 'VCMR-0.5-r10', 'VCMR-0.7-r10', 'SVMR-0.5-r1', 'SVMR-0.7-r1')
    print({k: (res[k], base[k]) for k in keys})
    assert res['VR-r1'] > 4 * base['VR-r1'] and res['VR-r10'] > 2 * base['VR-r10']
    assert res['SVMR-0.5-r1'] > 2 * base['SVMR-0.5-r1'] + 5 and res['SVMR-0.7-r1'] > 2 * base['SVMR-0.7-r1']
    assert res['VCMR-0.5-r10'] > 2 * base['VCMR-0.5-r10'] + 2
    run = tmp_path / 'run'
    assert json.loads((run / 'results.json').read_text())['results']['val'] == res
    ranking = json.loads((run / 'hard_negatives.json').read_text())
    assert len(ranking) == len(PREMInputs(exp).annotations('train')) and all(len(v) == exp.train.neg_pool + 1 for v in ranking.values())
