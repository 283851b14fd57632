"""Text features (notebook 14): the official vocabulary files, independent implementations, and the chain
from public files to a training run.

- `build-vocab` reproduces the MLM counts files shipped with MESM (Charades-STA CLIP and GloVe, QVHighlights
  CLIP) line for line, from the full annotation files where they are available (`SHARED` of conftest.py;
  skipped otherwise).
- The BPE tokenizer gives the ids of Hugging Face's CLIP tokenizer (Rust `tokenizers`, a separate
  implementation) on every sentence at hand, once both see the same cleaned text.
- The text tower equals Hugging Face's `CLIPTextModel` with the same random weights, and loads a file written
  in the released key layout (a plain state dict and a TorchScript archive) from an OpenAI-layout reference
  module built on `nn.MultiheadAttention`, matching its outputs.
"""
import json
import shutil
from collections import Counter, OrderedDict

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from conftest import FIX, SHARED
from mesm_prem.cli import main
from mesm_prem.records import DataError, read_jsonl, read_charades_sta
from mesm_prem.stores import TextStore
from mesm_prem.text import ClipBPE, ClipTextConfig, ClipTextTower, GloVeVocab, clip_bpe_path, clip_clean, closed_class_tagger, count_tokens, counts_lines, load_clip_text_tower, nltk_words, punctuation_words


full = pytest.mark.skipif(not SHARED.is_dir(), reason='the full annotation files (conftest.SHARED) are not here')
pytestmark = pytest.mark.filterwarnings('ignore::mesm_prem.records.RepairWarning')


# ---------------------------------------------------------------- the shipped counts files
@full
@pytest.mark.parametrize('kind,name', [('clip', 'CLIP_tokenized_count.txt'), ('glove', 'GloVe_tokenized_count.txt')])
def test_build_vocab_reproduces_charades(kind, name, tmp_path):
    assert main(['build-vocab', '--preset', 'charades_sta_C+SF_C', '--set', f'data.root={SHARED / "charades_sta"}',
                 '--kind', kind, '--out', str(tmp_path / name)]) == 0
    assert (tmp_path / name).read_text() == (SHARED / 'charades_sta' / name).read_text()


@full
def test_build_vocab_reproduces_qvhighlights_from_train_and_val(tmp_path):
    shipped = (SHARED / 'qvhighlights' / 'CLIP_tokenized_count.txt').read_text()
    root = f'data.root={SHARED / "qvhighlights"}'
    assert main(['build-vocab', '--preset', 'qvhighlights_C+SF_C', '--set', root, '--out', str(tmp_path / 'tv.txt')]) == 0
    assert (tmp_path / 'tv.txt').read_text() == shipped                      # train + val, max_words_l 32
    assert main(['build-vocab', '--preset', 'qvhighlights_C+SF_C', '--set', root, '--splits', 'train', '--out', str(tmp_path / 't.txt')]) == 0
    assert len((tmp_path / 't.txt').read_text().splitlines()) == 6169 < len(shipped.splitlines()) == 6738


@full
def test_tacos_test_words_are_in_the_shipped_glove_counts():
    """Only TACoS's test split is at hand: its words (punctuation split) are all in the shipped file, each counted at
    most as often as the file says, and the file's ids are the official Vocabulary's (sorted words from 2)."""
    d = SHARED / 'tacos'
    rows = [l.split() for l in (d / 'GloVe_tokenized_count.txt').read_text().splitlines()]
    shipped = {w: (int(i), int(n)) for w, i, n in rows}
    c = count_tokens([s for v in json.loads((d / 'test.json').read_text()).values() for s in v['sentences']], 'glove')
    assert len(c) == 1090 and all(w in shipped and n <= shipped[w][1] for w, n in c.items())
    v = GloVeVocab.from_counts(d / 'GloVe_tokenized_count.txt')
    assert all(v[w] == i for w, (i, _) in shipped.items())


def test_counts_follow_the_official_order():
    "Equal counts keep first-seen order; GloVe ids are the sorted-word ids; CLIP counts stop at max_words - 2."
    ann = read_charades_sta(FIX / 'charades_sta_test_excerpt.txt', FIX / 'Charades_v1_test_excerpt.csv')
    sents = [q.sentence for q in ann]
    c = count_tokens(sents, 'glove')
    assert list(c) == list(dict.fromkeys(w for s in sents for w in punctuation_words(s)))
    lines = counts_lines(c, 'glove')
    n = [int(l.split()[2]) for l in lines]
    assert n == sorted(n, reverse=True) and sum(n) == sum(len(punctuation_words(s)) for s in sents)
    words = sorted(c)
    assert all(int(l.split()[1]) == words.index(l.split()[0]) + 2 for l in lines)
    tok = ClipBPE()
    long = 'a person ' * 20
    assert sum(count_tokens([long], 'clip', 16, tok).values()) == 14


# ---------------------------------------------------------------- tokenizer against Hugging Face
def _sentences():
    s = [q.sentence for q in read_charades_sta(FIX / 'charades_sta_test_excerpt.txt', FIX / 'Charades_v1_test_excerpt.csv')]
    s += [m['query'] for _, m in read_jsonl(FIX / 'qvhighlights_val_excerpt.jsonl')]
    s += [m['desc'] for _, m in read_jsonl(FIX / 'tvr_val_excerpt.jsonl')]
    if SHARED.is_dir():
        s += [l.split('##', 1)[1].strip() for f in ('charades_sta_train.txt', 'charades_sta_test.txt') for l in open(SHARED / 'charades_sta' / f)]
        s += [m['query'] for sp in ('train', 'val') for _, m in read_jsonl(SHARED / 'qvhighlights' / f'highlight_{sp}_release.jsonl')]
        s += [m['desc'] for _, m in read_jsonl(SHARED / 'tvr' / 'tvr_val_release.jsonl')]
    return s


def test_bpe_ids_equal_huggingface_clip_tokenizer():
    transformers = pytest.importorskip('transformers')
    import gzip
    tok = ClipBPE()
    merges = [tuple(l.split()) for l in gzip.open(clip_bpe_path()).read().decode('utf-8').split('\n')[1:48895]]
    hf = transformers.CLIPTokenizer(vocab={t: i for i, t in enumerate(tok.decoder)}, merges=merges)
    sents = _sentences()
    cleaned = [clip_clean(s) for s in sents]    # HF normalises with NFC + lower case, CLIP with ftfy + HTML unescape
    ours = [[tok.sot, *tok.encode(s)[0], tok.eot] for s in sents]
    assert ours == hf(cleaned)['input_ids']
    assert len(sents) >= 100


def test_clip_cleaning_cases():
    tok = ClipBPE()
    assert tok.encode('a patient’s room')[0] == tok.encode("a patient's room")[0]          # ftfy straightens quotes
    assert tok.encode('salt &amp;amp; pepper')[0] == tok.encode('salt & pepper')[0]       # HTML unescaped twice
    assert tok.encode('A\tPERSON\n opens')[0] == tok.encode('a person opens')[0]


# ---------------------------------------------------------------- the text tower
def _randomize(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if 'ln' in n or 'layer_norm' in n: p.copy_((1. if n.endswith('weight') else 0.) + 0.1 * torch.randn(p.shape, generator=g))
            else: p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return m


def _to_hf(sd, layers):
    out = {'embeddings.token_embedding.weight': sd['token_embedding.weight'], 'embeddings.position_embedding.weight': sd['positional_embedding'],
           'final_layer_norm.weight': sd['ln_final.weight'], 'final_layer_norm.bias': sd['ln_final.bias']}
    for i in range(layers):
        b, h = f'blocks.{i}.', f'encoder.layers.{i}.'
        for t in ('weight', 'bias'):
            q, k, v = sd[b + 'qkv.' + t].chunk(3)
            out.update({h + 'self_attn.q_proj.' + t: q, h + 'self_attn.k_proj.' + t: k, h + 'self_attn.v_proj.' + t: v,
                        h + 'self_attn.out_proj.' + t: sd[b + 'out.' + t], h + 'layer_norm1.' + t: sd[b + 'ln_1.' + t],
                        h + 'layer_norm2.' + t: sd[b + 'ln_2.' + t], h + 'mlp.fc1.' + t: sd[b + 'fc.' + t], h + 'mlp.fc2.' + t: sd[b + 'proj.' + t]})
    return out


@pytest.mark.parametrize('size', ['tiny', 'vit-b-32'])
def test_tower_equals_huggingface_clip_text_model(size):
    transformers = pytest.importorskip('transformers')
    cfg = ClipTextConfig() if size == 'vit-b-32' else ClipTextConfig(vocab_size=50000, width=64, heads=4, layers=2, embed_dim=32)
    ours = _randomize(ClipTextTower(cfg)).eval()
    hf = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=4 * cfg.width, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, max_position_embeddings=cfg.context, hidden_act='quick_gelu', layer_norm_eps=1e-5,
        projection_dim=cfg.embed_dim, attention_dropout=0.0)).eval()
    tgt = getattr(hf, 'text_model', hf)
    missing = tgt.load_state_dict(_to_hf(ours.state_dict(), cfg.layers), strict=False)
    assert not [k for k in missing.missing_keys if 'position_ids' not in k]
    tok = ClipBPE()
    rows = [tok.tokenize(s, 32)[0] for s in ['a person opens the door.', 'person sits on a chair and then reads a book in the kitchen', 'he laughs']]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for r, i in enumerate(rows): ids[r, :len(i)] = torch.tensor(i)
    out = ours(ids)
    with torch.no_grad(): ref = hf(input_ids=ids).last_hidden_state
    torch.testing.assert_close(out['last_hidden_state'], ref, atol=1e-4, rtol=1e-4)   # two fp32 programs: any CPU
    eot = ids.argmax(-1)
    torch.testing.assert_close(out['pooled'], ref[torch.arange(len(ids)), eot] @ ours.text_projection, atol=1e-4, rtol=1e-4)


class _QuickGELU(nn.Module):
    def forward(self, x): return x * torch.sigmoid(1.702 * x)


class _RefBlock(nn.Module):
    "A block in OpenAI CLIP's layout: `attn` is an nn.MultiheadAttention, `mlp` holds `c_fc`/`c_proj`."
    def __init__(self, w, h):
        super().__init__()
        self.attn, self.ln_1, self.ln_2 = nn.MultiheadAttention(w, h), nn.LayerNorm(w), nn.LayerNorm(w)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(w, 4 * w), gelu=_QuickGELU(), c_proj=nn.Linear(4 * w, w)))

    def forward(self, x, mask):   # x: (L, B, w)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _RefCLIP(nn.Module):
    "Whole-CLIP key layout (text tower plus stand-ins for the image tower and logit scale); runs the full context."
    def __init__(self, vocab=600, ctx=77, w=64, h=1, layers=2, embed=32):   # CLIP's heads: width // 64
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, w)
        self.positional_embedding = nn.Parameter(torch.zeros(ctx, w))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(_RefBlock(w, h) for _ in range(layers))
        self.ln_final = nn.LayerNorm(w)
        self.text_projection = nn.Parameter(torch.zeros(w, embed))
        self.visual = nn.Linear(3, 3)
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.ctx = ctx

    def forward(self, ids):
        x = torch.zeros(ids.shape[0], self.ctx, dtype=torch.long)
        x[:, :ids.shape[1]] = ids
        mask = torch.full((self.ctx, self.ctx), float('-inf')).triu(1)
        h = (self.token_embedding(x) + self.positional_embedding).permute(1, 0, 2)
        for b in self.transformer.resblocks: h = b(h, mask)
        return self.ln_final(h.permute(1, 0, 2))


def test_loader_reads_the_released_layouts(tmp_path):
    ref = _randomize(_RefCLIP()).eval()
    ids = torch.tensor([[400, 5, 7, 599, 0], [400, 9, 599, 0, 0]])
    with torch.no_grad(): want = ref(ids)[:, :ids.shape[1]]
    sd = {**ref.state_dict(), 'input_resolution': torch.tensor(224), 'context_length': torch.tensor(77), 'vocab_size': torch.tensor(600)}
    torch.save(sd, tmp_path / 'clip_text_encoder.pth')
    torch.jit.save(torch.jit.trace(ref, ids), str(tmp_path / 'ViT-B-32.pt'))
    for name in ('clip_text_encoder.pth', 'ViT-B-32.pt'):   # this TorchScript file is ours, not OpenAI's: trusted explicitly
        tower = load_clip_text_tower(tmp_path / name, trust_torchscript=name.endswith('.pt'))
        assert (tower.cfg.width, tower.cfg.heads, tower.cfg.layers, tower.cfg.context, tower.cfg.vocab_size) == (64, 1, 2, 77, 600)
        torch.testing.assert_close(tower(ids)['last_hidden_state'], want, atol=1e-4, rtol=1e-4)
    torch.save({k: v for k, v in sd.items() if k != 'ln_final.weight'}, tmp_path / 'partial.pth')
    with pytest.raises(DataError, match=r"partial.pth: missing CLIP text keys \['ln_final.weight'\]"):
        load_clip_text_tower(tmp_path / 'partial.pth')
    with pytest.raises(DataError, match='no_such.pth: CLIP weights file not found'):
        load_clip_text_tower(tmp_path / 'no_such.pth')


# ---------------------------------------------------------------- from the public files to a training run
def _charades_root(tmp_path):
    root = tmp_path / 'charades'; root.mkdir()
    for split in ('train', 'test'):
        shutil.copy(FIX / 'charades_sta_test_excerpt.txt', root / f'charades_sta_{split}.txt')
        shutil.copy(FIX / 'Charades_v1_test_excerpt.csv', root / f'Charades_v1_{split}.csv')
    ann = read_charades_sta(root / 'charades_sta_test.txt', root / 'Charades_v1_test.csv')
    rng = np.random.default_rng(0)
    for name in ('clip_image.hdf5', 'slowfast.hdf5'):
        with h5py.File(root / name, 'w') as f:
            for v in ann.videos: f[v] = rng.standard_normal((int(max(q.duration for q in ann if q.vid == v)) + 1, 8)).astype(np.float32)
    return root, ann


def test_clip_chain_from_files_to_training(tmp_path, capsys):
    "build-vocab, extract-text with a CLIP checkpoint in the released layout, then one epoch of training from the preset."
    root, ann = _charades_root(tmp_path)
    ref = _randomize(_RefCLIP(vocab=49408, w=64, layers=2)).eval()
    torch.save(ref.state_dict(), tmp_path / 'clip_text_encoder.pth')
    sets = [f'data.root={root}', 'model.txt_dim=64']
    assert main(['build-vocab', '--preset', 'charades_sta_C+SF_C', '--set', *sets]) == 0
    assert capsys.readouterr().out.startswith('wrote ')
    assert main(['extract-text', '--preset', 'charades_sta_C+SF_C', '--set', *sets, '--clip-weights', str(tmp_path / 'clip_text_encoder.pth'),
                 '--pos-tagger', 'closed-class', '--quiet', '--device', 'cpu']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['tokenizer'] == 'clip' and report['pos_tagger'] == 'closed-class' and report['dtype'] == 'float32'
    store = TextStore(root / 'text' / 'charades_sta_test.h5', max_words=16)
    assert len(store) == len(ann)
    q = ann[5]
    ids, w = ClipBPE().tokenize(q.sentence, 16, closed_class_tagger)
    t = store[q.qid]
    assert t.ids.tolist() == ids and t.weights.tolist() == w
    with torch.no_grad(): want = ref(torch.tensor([ids]))[0, :len(ids)].numpy()
    np.testing.assert_allclose(t.feat, want, atol=1e-4, rtol=1e-4)
    rc = main(['train', 'mesm', '--preset', 'charades_sta_C+SF_C', '--set', *sets, 'model.vid_dim=18', 'model.hidden=32', 'model.n_heads=4',
               'model.d_ff=64', 'train.epochs=1', 'train.batch_size=4', '--run-dir', str(tmp_path / 'run'), '--quiet', '--device', 'cpu'])
    assert rc == 0
    assert 'MR-full-R1@0.5' in json.loads((tmp_path / 'run' / 'results.json').read_text())['results']['test']


def test_glove_chain_and_unknown_words(tmp_path):
    "glove.6B-style text file + the counts file's vocabulary: ids, the shared unknown vector, and resume of a finished store."
    root, ann = _charades_root(tmp_path)
    sets = ['--preset', 'charades_sta_VGG_GloVe', '--set', f'data.root={root}']
    assert main(['build-vocab', *sets, '--splits', 'test']) == 0
    vocab = GloVeVocab.from_counts(root / 'GloVe_tokenized_count.txt')
    rng = np.random.default_rng(1)
    known = [w for w in vocab.itow[2:] if w != 'door']                      # 'door' has no GloVe vector
    vecs = {w: rng.standard_normal(300).astype(np.float32) for w in known + ['zebra']}
    (tmp_path / 'glove.txt').write_text(''.join(f"{w} {' '.join(f'{x:.6f}' for x in v)}\n" for w, v in vecs.items()))
    args = ['extract-text', *sets, '--glove', str(tmp_path / 'glove.txt'), '--pos-tagger', 'closed-class', '--quiet', '--device', 'cpu']
    assert main(args) == 0
    store = TextStore(root / 'text' / 'charades_sta_test_glove.h5')
    unk = torch.randn(300, generator=torch.Generator().manual_seed(0)).numpy()
    for q in ann:
        t = store[q.qid]
        words = [x.lower() for x in nltk_words(q.sentence)][:16]
        assert t.ids.tolist() == [vocab[x] for x in words]
        for x, f in zip(words, t.feat):
            np.testing.assert_allclose(f, vecs[x] if x in vecs else unk, atol=1e-5)
    assert any('door' in nltk_words(q.sentence) for q in ann)
    before = (root / 'text' / 'charades_sta_test_glove.h5').stat().st_mtime_ns
    assert main(args) == 0                                                    # finished by the same encoder: left alone
    assert (root / 'text' / 'charades_sta_test_glove.h5').stat().st_mtime_ns == before


def test_bad_text_inputs(tmp_path, capsys):
    root, _ = _charades_root(tmp_path)
    sets = ['--preset', 'charades_sta_VGG_GloVe', '--set', f'data.root={root}']
    assert main(['build-vocab', *sets]) == 0
    (tmp_path / 'glove.txt').write_text('person 0.1 0.2\n')
    assert main(['extract-text', *sets, '--glove', str(tmp_path / 'glove.txt'), '--quiet']) == 2
    assert 'glove.txt:1: expected a word and 300 numbers, got 2 fields' in capsys.readouterr().err
    assert main(['extract-text', *sets, '--glove-pkl', str(tmp_path / 'missing.pkl'), '--quiet']) == 2
    assert 'missing.pkl: glove.pkl not found' in capsys.readouterr().err
    (tmp_path / 'bad.pkl').write_bytes(b'\x80\x04garbage')
    assert main(['extract-text', *sets, '--glove-pkl', str(tmp_path / 'bad.pkl'), '--quiet']) == 2
    assert 'bad.pkl: cannot unpickle' in capsys.readouterr().err
    (tmp_path / 'w.pth').write_bytes(b'\x00' * 10)
    assert main(['extract-text', '--preset', 'charades_sta_C+SF_C', '--set', f'data.root={root}', '--clip-weights', str(tmp_path / 'w.pth'), '--quiet']) == 2
    assert 'w.pth: cannot read the CLIP weights' in capsys.readouterr().err
    # a query with no word in glove.pkl names the query
    import pickle
    pickle.dump(dict(counter=Counter(zebra=1), w2id={'zebra': 0}, id2vec=[np.ones(300)]), open(tmp_path / 'g.pkl', 'wb'))
    assert main(['extract-text', *sets, '--glove-pkl', str(tmp_path / 'g.pkl'), '--quiet']) == 2
    assert "charades_sta_train.txt: query 0 (" in capsys.readouterr().err
