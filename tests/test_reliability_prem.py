"""PREM under bad or mismatched input: corpus indexes that another model or another split built, configs that would
fail deep inside training, and an evaluation that must not depend on (nor move) the global random generators."""
import dataclasses
import json
import random

import numpy as np
import pytest
import torch

from mesm_prem.config import atomic_save, save_config
from mesm_prem.records import DataError
from mesm_prem.prem import PREMConfig, PREMLocalizer, PREMRetriever
from mesm_prem.corpus import CorpusIndex, FlatCorpusIndex, PREMInputs, retrieve_split, search_corpus
from mesm_prem.experiments import (PREMEval, PREMLocalizerTrain, PREMRetrieverTrain, PREMTrain, preset,
                                   synthetic_prem_experiment)
from mesm_prem.run_prem import PREMSearcher, train_prem


def _exp(synth):
    return synthetic_prem_experiment(synth[0], retriever_epochs=1, localizer_epochs=1)


def _models(exp, seed):
    torch.manual_seed(seed)
    return PREMRetriever(exp.model).eval(), PREMLocalizer(exp.model).eval()


def _run_folder(path, exp, seed):
    "A PREM run folder with untrained models (what `search` reads), without training."
    ret, loc = _models(exp, seed)
    path.mkdir(parents=True)
    save_config(exp, path / 'config.json')
    for name, m in (('retriever', ret), ('localizer', loc)):
        atomic_save(m.state_dict(), path / name / 'checkpoints' / 'best.pt')
    return path


# -- corpus index provenance ------------------------------------------------------------
def test_index_of_another_retriever_or_split_is_refused(synth, tmp_path):
    exp = _exp(synth)
    inputs = PREMInputs(exp)
    ret_a, loc_a = _models(exp, 0)
    ret_b, _ = _models(exp, 1)
    val = list(inputs.corpus('val'))
    idx = CorpusIndex.build(ret_a, val, inputs.video, inputs.subtitles, split='val')
    idx.save(tmp_path / 'a.pt')
    loaded = CorpusIndex.load(tmp_path / 'a.pt')
    assert loaded.check(ret_a, val, 'val') is loaded                                     # its own model and split: fine
    with pytest.raises(DataError, match=r"a\.pt: corpus index does not fit: built by another retriever "
                                        r"\(weights [0-9a-f]{16}, this run's [0-9a-f]{16}\)"):
        loaded.check(ret_b, val, 'val')
    with pytest.raises(DataError, match=r"a\.pt: .*built by another retriever"):     # and through the library's search
        search_corpus(ret_b, loc_a, inputs, 'val', index=loaded)
    test_split = list(inputs.corpus('test_public'))
    with pytest.raises(DataError, match=r"a\.pt: corpus index does not fit: built over split 'val', not 'test_public'; "
                                        rf"over another corpus \({len(val)} videos, hash [0-9a-f]+; "
                                        rf"expected {len(test_split)} videos"):
        retrieve_split(ret_a, inputs, 'test_public', index=loaded)
    other = PREMRetriever(dataclasses.replace(exp.model, modalities='video')).eval()
    with pytest.raises(DataError, match=r"modalities 'both', this model's 'video'"):
        loaded.check(other)
    # the flat index keeps the provenance on disk
    FlatCorpusIndex.from_index(loaded).save(tmp_path / 'flat')
    flat = FlatCorpusIndex.open(tmp_path / 'flat')
    assert flat.check(ret_a, val, 'val') is flat
    with pytest.raises(DataError, match=r"flat: corpus index does not fit: built by another retriever"):
        flat.check(ret_b, val)
    # an index without provenance (an older file) is refused, not trusted
    atomic_save(dict(vids=loaded.vids, chunks=loaded.chunks, masks=loaded.masks), tmp_path / 'old.pt')
    with pytest.raises(DataError, match=r"old\.pt: this corpus index records no provenance"):
        CorpusIndex.load(tmp_path / 'old.pt').check(ret_a)
    atomic_save(dict(x=1), tmp_path / 'junk.pt')
    with pytest.raises(DataError, match=r"junk\.pt: not a corpus index file"):
        CorpusIndex.load(tmp_path / 'junk.pt')


def test_cli_search_refuses_a_foreign_index(synth, tmp_path, capsys):
    from mesm_prem.cli import main
    exp = _exp(synth)
    a, b = _run_folder(tmp_path / 'a', exp, 0), _run_folder(tmp_path / 'b', exp, 1)
    index = tmp_path / 'index.pt'
    args = ['--out', str(tmp_path / 'sub.json'), '--index', str(index), '--quiet', '--device', 'cpu']
    assert main(['search', str(a), '--split', 'test_public'] + args) == 0 and index.exists()
    capsys.readouterr()
    assert main(['search', str(b), '--split', 'test_public'] + args) == 2            # another model's index
    err = capsys.readouterr().err
    assert err.startswith(f"mesm-prem search: error: {index}: corpus index does not fit: built by another retriever") \
        and err.count('\n') == 1 and 'Traceback' not in err, err
    assert main(['search', str(a), '--split', 'val'] + args) == 2          # another split's index (was a KeyError)
    err = capsys.readouterr().err
    assert f"{index}: corpus index does not fit: built over split 'test_public', not 'val'" in err, err
    assert err.count('\n') == 1, err
    assert main(['search', str(a), '--split', 'test_public'] + args) == 0             # its own: still fine


# -- the evaluation draws nothing from the global generators ------------------------------
def _global_state():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def test_search_is_independent_of_the_global_seed(synth):
    exp = _exp(synth)
    inputs = PREMInputs(exp)
    ret, loc = _models(exp, 0)
    subs = []
    for seed in (0, 12345):
        torch.manual_seed(seed); np.random.seed(seed); random.seed(seed)
        before = _global_state()
        subs.append(search_corpus(ret, loc, inputs, 'val'))
        after = _global_state()
        assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    assert json.dumps(subs[0]) == json.dumps(subs[1])
    s = PREMSearcher.__new__(PREMSearcher)      # the searcher of new queries too (built from the same models)
    s.device, s.exp, s.retriever, s.localizer, s.inputs = 'cpu', exp, ret, loc, inputs
    s.corpus_index = s.durations = s._cache = s._cache_for = None
    s.index(split='val')
    qids = [q.qid for q in inputs.annotations('val')][:4]
    outs = []
    for seed in (3, 4):
        torch.manual_seed(seed)
        before = torch.get_rng_state()
        outs.append(s.search(qids, top_k=5))
        assert torch.equal(before, torch.get_rng_state())
    assert outs[0] == outs[1]


# -- configs that would only fail deep inside ----------------------------------------
@pytest.mark.parametrize('make,message', [
    (lambda: PREMConfig(hidden=66, n_heads=4), r"^model\.hidden must be divisible by n_heads \(4\), got 66$"),
    (lambda: PREMConfig(n_heads=0), r"^model\.n_heads must be an integer >= 1, got 0$"),
    (lambda: PREMConfig(conv_kernel=4), r"^model\.conv_kernel must be odd"),
    (lambda: PREMConfig(tau=0.), r"^model\.tau must be a finite number > 0, got 0\.0$"),
    (lambda: PREMConfig(dropout=1.), r"^model\.dropout must be a number in \[0, 1\), got 1\.0$"),
    (lambda: PREMConfig(max_len=0), r"^model\.max_len must be an integer >= 1, got 0$"),
    (lambda: PREMConfig(min_len=5, max_len=3), r"^model\.max_len must be >= min_len \(5\), got 3$"),
    (lambda: PREMConfig(adv_iou=1.5), r"^model\.adv_iou must be a number in \(0, 1\], got 1\.5$"),
    (lambda: PREMConfig(gate='sum'), r"^model\.gate must be one of"),
    (lambda: PREMTrain(localizer=PREMLocalizerTrain(batch_size=0)),
     r"^train\.localizer\.batch_size must be an integer >= 1, got 0$"),
    (lambda: PREMRetrieverTrain(lr=-1.), r"^train\.retriever\.lr must be a finite number > 0, got -1\.0$"),
    (lambda: PREMEval(norm='global'), r"^eval\.norm must be one of \['video', 'joint'\], got 'global'$"),
    (lambda: preset('prem', 'tvr', ['train.localizer.batch_size=0']),
     r"^--set train\.localizer\.batch_size=0: must be an integer >= 1, got 0$"),
    (lambda: preset('prem', 'tvr', ['eval.max_len=12']), r"unknown key 'max_len' in eval, now model\.max_len"),
    (lambda: preset('prem', 'tvr', ['train.localizer.stop_score=VCMR-0.9-r1']),
     r"^train\.localizer\.stop_score must be a metric of the search"),
    (lambda: preset('prem', 'tvr', ['train.retriever.stop_score=VCMR-0.7-r10']),
     r"^train\.retriever\.stop_score must be one of \['VR-r1', 'VR-r5', 'VR-r10', 'VR-r100'\], got 'VCMR-0\.7-r10'$"),
])
def test_bad_prem_config_is_one_line(make, message):
    with pytest.raises(DataError, match=message) as e:
        make()
    assert '\n' not in str(e.value)


def test_overrides_and_training_check_the_config_first(synth, tmp_path):
    with pytest.raises(DataError, match=r"^--set model\.hidden=66: must be divisible by n_heads \(4\), got 66$"):
        preset('prem', 'tvr', ['model.hidden=66'])
    exp = _exp(synth)
    exp = dataclasses.replace(exp, data=dataclasses.replace(exp.data, eval_splits=['test']))   # no such split
    with pytest.raises(DataError, match=r"^data\.eval_splits must be a non-empty list of splits of data\.annotations"):
        train_prem(exp, tmp_path / 'run', device='cpu', progress=False)
    assert not (tmp_path / 'run').exists()                                       # before any work
