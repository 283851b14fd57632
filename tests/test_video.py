"""Features from video files (notebooks 18-20) against independent implementations.

- The CLIP image tower equals Hugging Face's `CLIPVisionModelWithProjection` with the same random weights (a tiny
  tower and the ViT-B/32 sizes), after the weights went through a file in OpenAI's released key layout.
- The SlowFast R50 8x8 equals PyTorchVideo's `create_slowfast` with the same random weights (batch-norm statistics
  included), read from a checkpoint in PyTorchVideo's layout (the PySlowFast and Caffe2 layouts are round-tripped in
  notebook 20).
"""
import numpy as np
import pytest
import torch

from mesm_prem.clip_vision import ClipVisionConfig, ClipVisionTower, clip_preprocess, load_clip_vision_tower
from mesm_prem.text import openai_clip_layout


def _randomize(m):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters(): p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def _openai_layout(tower) -> dict: return openai_clip_layout(tower.state_dict(), 'visual.')


def _to_hf(sd: dict, layers: int) -> dict:
    "OpenAI-layout image tower weights -> Hugging Face CLIPVisionModelWithProjection names."
    e, out = 'vision_model.', {}
    out[e + 'embeddings.patch_embedding.weight'] = sd['visual.conv1.weight']
    out[e + 'embeddings.class_embedding'] = sd['visual.class_embedding']
    out[e + 'embeddings.position_embedding.weight'] = sd['visual.positional_embedding']
    for a, b in (('ln_pre', 'pre_layrnorm'), ('ln_post', 'post_layernorm')):
        for t in ('weight', 'bias'): out[f'{e}{b}.{t}'] = sd[f'visual.{a}.{t}']
    out['visual_projection.weight'] = sd['visual.proj'].T
    for i in range(layers):
        r, h = f'visual.transformer.resblocks.{i}.', f'{e}encoder.layers.{i}.'
        for t in ('weight', 'bias'):
            q, k, v = sd[f'{r}attn.in_proj_{t}'].chunk(3)
            out.update({f'{h}self_attn.q_proj.{t}': q, f'{h}self_attn.k_proj.{t}': k, f'{h}self_attn.v_proj.{t}': v,
                        f'{h}self_attn.out_proj.{t}': sd[f'{r}attn.out_proj.{t}'], f'{h}layer_norm1.{t}': sd[f'{r}ln_1.{t}'],
                        f'{h}layer_norm2.{t}': sd[f'{r}ln_2.{t}'], f'{h}mlp.fc1.{t}': sd[f'{r}mlp.c_fc.{t}'],
                        f'{h}mlp.fc2.{t}': sd[f'{r}mlp.c_proj.{t}']})
    return out


@pytest.mark.parametrize('size', ['tiny', 'vit-b-32'])
def test_image_tower_equals_huggingface(size, tmp_path):
    transformers = pytest.importorskip('transformers')
    cfg = ClipVisionConfig() if size == 'vit-b-32' else ClipVisionConfig(image_size=32, patch=8, width=64, heads=1,
                                                                          layers=2, embed_dim=16)
    sd = _openai_layout(_randomize(ClipVisionTower(cfg)))
    torch.save(sd | {'logit_scale': torch.ones([])}, tmp_path/'clip.pt')          # the released layout, on disk
    ours = load_clip_vision_tower(tmp_path/'clip.pt')                           # heads: width / 64, as CLIP's
    assert ours.cfg == cfg
    hf = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        hidden_size=cfg.width, intermediate_size=4 * cfg.width, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, image_size=cfg.image_size, patch_size=cfg.patch, projection_dim=cfg.embed_dim,
        hidden_act='quick_gelu', layer_norm_eps=1e-5, attention_dropout=0.0)).eval()
    res = hf.load_state_dict(_to_hf(sd, cfg.layers), strict=False)
    assert not [k for k in res.missing_keys if 'position_ids' not in k] and not res.unexpected_keys
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    x = clip_preprocess(frames, cfg.image_size)
    out = ours(x)
    with torch.no_grad(): ref = hf(pixel_values=x)
    torch.testing.assert_close(out['pooled'], ref.image_embeds, atol=1e-4, rtol=1e-4)          # two fp32 programs
    torch.testing.assert_close(out['last_hidden_state'], ref.last_hidden_state, atol=1e-4, rtol=1e-4)


def _pytorchvideo_slowfast(monkeypatch):
    """PyTorchVideo's `create_slowfast`, an independent SlowFast R50 8x8 (its head module imports torchvision's RoIAlign,
    unused here; torchvision does not import beside the CPU torch of these machines, so a stand-in is given)."""
    import sys, types
    try: import torchvision  # noqa: F401
    except Exception:
        tv, ops = types.ModuleType('torchvision'), types.ModuleType('torchvision.ops')
        ops.RoIAlign, tv.ops = object, ops
        monkeypatch.setitem(sys.modules, 'torchvision', tv); monkeypatch.setitem(sys.modules, 'torchvision.ops', ops)
    pytest.importorskip('fvcore')
    return pytest.importorskip('pytorchvideo.models.slowfast').create_slowfast


def test_slowfast_equals_pytorchvideo(tmp_path, monkeypatch):
    "Our SlowFast, loaded from PyTorchVideo's checkpoint layout, gives PyTorchVideo's pooled features and logits."
    from mesm_prem.slowfast import load_slowfast
    create_slowfast = _pytorchvideo_slowfast(monkeypatch)
    torch.manual_seed(0)
    ref = create_slowfast(model_num_class=400).eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.1); m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5); m.bias.normal_(0, 0.1)
    torch.save(dict(model_state=ref.state_dict()), tmp_path/'SLOWFAST_8x8_R50.pyth')
    with pytest.warns(UserWarning, match='another training run'):
        ours = load_slowfast(tmp_path/'SLOWFAST_8x8_R50.pyth')
    slow, fast = torch.randn(1, 3, 8, 224, 224).double(), torch.randn(1, 3, 32, 224, 224).double()
    ours, ref = ours.double(), ref.double()          # float64: the same numbers whatever the CPU's kernels
    with torch.no_grad():
        x = [slow, fast]
        for blk in ref.blocks[:6]: x = blk(x)                     # stem, res2-res5, pool and concatenation
        feat_ref = x.flatten(1)
        logits_ref = ref.blocks[6].proj(feat_ref.float().double())   # from the float32 features ours returns
    feat = ours(slow, fast)
    assert feat.shape == (1, 2304)
    torch.testing.assert_close(feat, feat_ref.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.logits(feat), logits_ref.float(), atol=1e-5, rtol=1e-5)


def _ffmpeg_fps(path, rate: str) -> list:
    "The source frames (their painted indices) that FFmpeg's `fps` filter outputs at `rate`, run through PyAV."
    import av
    from mesm_prem.video import frame_index_of
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        g = av.filter.Graph()
        src, f, sink = g.add_buffer(template=s), g.add('fps', f'fps={rate}'), g.add('buffersink')
        src.link_to(f); f.link_to(sink); g.configure()
        def drain():
            while True:
                try: out.append(frame_index_of(sink.pull().to_ndarray(format='rgb24')))
                except (av.BlockingIOError, av.EOFError): return
        for fr in c.decode(s): src.push(fr); drain()
        src.push(None); drain()
    return out


@pytest.mark.parametrize('fps,n', [(30, 140), (25, 120), (10, 45)])
def test_frames_are_those_of_ffmpegs_fps_filter(fps, n, tmp_path):
    """The public features' extractor sampled frames with FFmpeg's `fps` filter: one a clip for CLIP (fps = 1 / clip
    length), 30 a second for SlowFast. Our frame times pick the same source frames, and as many CLIP rows."""
    pytest.importorskip('av')
    from mesm_prem.video import frame_index_of, probe_video, read_frames, write_test_video
    from mesm_prem.extract_video import BEFORE, clip_frame_times
    p = write_test_video(tmp_path/f'v{fps}.mp4', n_frames=n, fps=fps)
    D = probe_video(p).duration
    for clip_len, rate in ((1.0, '1'), (2.0, '1/2')):
        ours = [frame_index_of(x) for x in read_frames(p, clip_frame_times(D, clip_len))]
        assert ours == _ffmpeg_fps(p, rate), (clip_len, ours)
    grid = _ffmpeg_fps(p, '30')
    ours = [frame_index_of(x) for x in read_frames(p, (np.arange(len(grid)) + 0.5) / 30 - BEFORE)]
    assert ours == grid


def _tiny_weights(folder):
    "A small random CLIP (both towers, OpenAI's key layout, one file) and a narrow random SlowFast (.pyth)."
    from mesm_prem.clip_vision import ClipVisionConfig, ClipVisionTower
    from mesm_prem.slowfast import SlowFast, SlowFastConfig
    from mesm_prem.text import ClipTextConfig, ClipTextTower
    torch.manual_seed(0)
    sd = _openai_layout(ClipVisionTower(ClipVisionConfig(image_size=32, patch=8, width=64, heads=1, layers=1,
                                                         embed_dim=16)))
    sd |= openai_clip_layout(ClipTextTower(ClipTextConfig(width=64, heads=1, layers=1, embed_dim=16)).state_dict())
    torch.save(sd | {'logit_scale': torch.ones([])}, folder/'ViT-B-32.pt')
    torch.save(dict(model_state=SlowFast(SlowFastConfig(width=16)).state_dict()), folder/'SLOWFAST_8x8_R50.pyth')
    return folder/'ViT-B-32.pt', folder/'SLOWFAST_8x8_R50.pyth'


def _own_run(tmp_path) -> tuple:
    """The path of the docs page "Your own videos", command by command: video files -> extract-video -> annotations in
    the Charades-STA format -> build-vocab, extract-text -> train. Returns (videos folder, CLIP and SlowFast weights,
    run folder)."""
    from mesm_prem.cli import main
    from mesm_prem.stores import MLMVocab
    from mesm_prem.video import write_test_video
    vids, root = tmp_path/'videos', tmp_path/'data'
    vids.mkdir()
    for i in range(8): write_test_video(vids/f'v{i}.mp4', n_frames=30 + 5 * i, fps=10)
    cw, sw = _tiny_weights(tmp_path)
    assert main(['extract-video', str(vids), '--out', str(root), '--clip-weights', str(cw), '--slowfast-weights',
                 str(sw), '--quiet']) == 0
    lines = [f"v{i} {0.5 + 0.1 * i:.1f} {2.0 + 0.1 * i:.1f}##the screen turns red" for i in range(8)]
    lines += [f"v{i} 1.0 {2.5 + 0.1 * i:.1f}##it slowly goes green" for i in range(8)]
    (root/'train.txt').write_text('\n'.join(lines[:6] + lines[8:14]) + '\n')
    (root/'test.txt').write_text('\n'.join(lines[6:8] + lines[14:]) + '\n')
    data = ['--set', f'data.root="{root}"', 'data.annotations={"train": "train.txt", "test": "test.txt"}',
            'data.durations={"train": "durations.csv", "test": "durations.csv"}']
    assert main(['build-vocab', '--preset', 'charades_sta_C+SF_C', *data]) == 0
    assert main(['extract-text', '--preset', 'charades_sta_C+SF_C', *data, 'model.txt_dim=64', '--clip-weights', str(cw),
                 '--quiet']) == 0
    n_words = len((root/'CLIP_tokenized_count.txt').read_text().splitlines())          # a small vocabulary: all of it
    n_classes = MLMVocab.from_counts(root/'CLIP_tokenized_count.txt', n_words).n_classes
    run = tmp_path/'run'
    assert main(['train', 'mesm', '--preset', 'charades_sta_C+SF_C', '--run-dir', str(run), '--quiet', *data,
                 'model.vid_dim=594', 'model.txt_dim=64', f'model.n_classes={n_classes}', 'model.hidden=32',
                 'model.n_heads=4', 'model.d_ff=64', f'data.vocab_size={n_words}', 'train.epochs=1',
                 'train.batch_size=4', 'data.max_video_l=16', '--device', 'cpu']) == 0
    return vids, cw, sw, run


def test_own_videos_to_moments(tmp_path, capsys):
    """From video files to a trained run (`_own_run`), then predict --video-file, and the same answer from
    `MESMPredictor.predict_file`."""
    pytest.importorskip('av')
    from mesm_prem.cli import main
    from mesm_prem.extract_video import MESMPredictor
    vids, cw, sw, run = _own_run(tmp_path)
    capsys.readouterr()
    assert main(['predict', str(run), '--video-file', str(vids/'v3.mp4'), '--query', 'the screen turns red',
                 '--query', 'it slowly goes green', '--top-k', '3', '--clip-weights', str(cw), '--slowfast-weights',
                 str(sw), '--device', 'cpu']) == 0
    import json
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r['query'] for r in rows] == ['the screen turns red', 'it slowly goes green']
    for r in rows:
        assert r['vid'] == 'v3' and len(r['pred_relevant_windows']) == 3
        assert all(0 <= a < b <= 4.5 for a, b, _ in r['pred_relevant_windows']), r
        assert len(r['pred_saliency_scores']) == 5 and r['saliency_clip'] == 0.9      # 4.5 s: 5 CLIP, 5 SlowFast rows
    res = MESMPredictor(run, device='cpu').predict_file(vids/'v3.mp4', ['the screen turns red', 'it slowly goes green'],
                                                         top_k=3, clip_weights=cw, slowfast_weights=sw)
    assert [r['windows'] for r in res] == [r['pred_relevant_windows'] for r in rows]


def _chromium() -> str:
    "Headless Chromium's executable; skips the test (fails it under MESM_PREM_REQUIRE_BROWSER) where there is none."
    import os, shutil
    exe = next((shutil.which(b) for b in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(b)), None)
    if exe is None:
        if os.environ.get('MESM_PREM_REQUIRE_BROWSER'): pytest.fail('no Chromium on this machine')
        pytest.skip('no Chromium here')
    return exe


def _dom(exe: str, url: str, tmp_path) -> tuple:
    "(DOM, stderr) of the page at `url` once its scripts ran, in headless Chromium."
    import subprocess
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--window-size=1200,900',
             '--virtual-time-budget=20000', f'--user-data-dir={tmp_path/"profile"}']
    r = subprocess.run([exe, *flags, '--dump-dom', url], capture_output=True, text=True, timeout=180)
    return r.stdout, r.stderr


def test_serve_in_a_browser(tmp_path):
    """`mesm-prem serve`'s page in headless Chromium: the address types two sentences into the page and submits them;
    the moments read off the rendered page are the predictor's, and the video file is in the player."""
    import html, re
    pytest.importorskip('av')
    exe = _chromium()
    from urllib.parse import urlencode
    from mesm_prem.serve import DemoApp, serve
    vids, cw, sw, run = _own_run(tmp_path)
    app = DemoApp(run, vids, cw, sw, device='cpu')
    assert {v['id'] for v in app.videos()} >= {f'v{i}' for i in range(8)}
    want = app.predict('v3', ['the screen turns red', 'it slowly goes green'], 5)
    srv = serve(app, port=0)
    try:
        url = (f"http://127.0.0.1:{srv.server_address[1]}/?"
               + urlencode([('video', 'v3'), ('q', 'the screen turns red'), ('q', 'it slowly goes green')]))
        dom, err = _dom(exe, url, tmp_path)
        assert 'data-done="yes"' in dom, (err[-1500:], dom[-3000:])
        sents = [html.unescape(x) for x in re.findall(r'<div class="sent">(.*?)</div>', dom)]
        assert sents == ['the screen turns red', 'it slowly goes green']
        starts = [float(x) for x in re.findall(r'<li class="moment" data-start="([0-9.]+)"', dom)]
        assert starts == [w[0] for x in want for w in x['windows']]
        assert 'src="/media/v3"' in dom
    finally:
        srv.shutdown()


def _random_prem_run(tmp_path):
    "A PREM run folder with random models (the layout `train_prem` writes) over a small synthetic corpus."
    from mesm_prem.config import save_config
    from mesm_prem.experiments import synthetic_prem_experiment
    from mesm_prem.prem import PREMLocalizer, PREMRetriever
    from mesm_prem.synthetic import SynthConfig, write_synthetic_benchmark
    write_synthetic_benchmark(tmp_path/'bench', SynthConfig(vmr_videos=dict(train=2, val=1, test=1),
                                                            vcmr_videos=dict(train=4, val=10, test_public=2)))
    exp = synthetic_prem_experiment(tmp_path/'bench')
    run = tmp_path/'prem_run'
    torch.manual_seed(0)
    for part, model in (('retriever', PREMRetriever), ('localizer', PREMLocalizer)):
        (run/part/'checkpoints').mkdir(parents=True)
        torch.save(model(exp.model).state_dict(), run/part/'checkpoints'/'best.pt')
    save_config(exp, run/'config.json')
    return run


def test_serve_a_prem_run(tmp_path):
    """`mesm-prem serve` on a PREM run: the command serves the corpus page; in headless Chromium, `?q=words` lists the
    split's queries holding the words, and `?qid=ID` shows the query's top moments, the searcher's, read off the page."""
    import html, re, subprocess, sys, urllib.request, json
    exe = _chromium()
    from mesm_prem.serve import CorpusApp, serve
    run = _random_prem_run(tmp_path)
    p = subprocess.Popen([sys.executable, '-m', 'mesm_prem.cli', 'serve', str(run), '--port', '0', '--device', 'cpu',
                          '--index', str(tmp_path/'val.index')], stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        m = re.search(r'http://127\.0\.0\.1:(\d+)/ \((\d+) queries of val, (\d+) videos', line)
        assert m, line
        base = f"http://127.0.0.1:{m.group(1)}"
        assert 'Moments in a corpus' in urllib.request.urlopen(base + '/').read().decode()
        served = json.loads(urllib.request.urlopen(base + '/api/queries?q=').read())
    finally:
        p.terminate(); p.wait(timeout=30)
    assert (tmp_path/'val.index').exists()                        # --index: written on the first start
    app = CorpusApp(run, 'val', device='cpu', index=tmp_path/'val.index')
    assert served == app.queries('') and int(m.group(2)) == len(app.ann)
    q0 = app.ann.queries[0]
    word = q0.sentence.split()[1]
    want = app.search(q0.qid, 10)
    srv = serve(app, port=0)
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}/"
        dom, err = _dom(exe, base + '?q=' + word, tmp_path)
        assert 'data-done="yes"' in dom, (err[-1500:], dom[-3000:])
        listed = [html.unescape(x) for x in re.findall(r'<li class="query" data-qid="[^"]*">(.*?)</li>', dom)]
        assert listed == [x['query'] for x in app.queries(word)] and q0.sentence in listed
        dom, err = _dom(exe, base + f'?qid={q0.qid}', tmp_path)
        assert 'data-done="yes"' in dom, (err[-1500:], dom[-3000:])
        rows = re.findall(r'<li class="moment( hit)?" data-vid="([^"]+)" data-start="([0-9.e-]+)" data-end="([0-9.e-]+)"', dom)
        assert [(v, float(a), float(b)) for _, v, a, b in rows] == [(x['vid'], x['start'], x['end']) for x in want['moments']]
        assert [bool(h) for h, *_ in rows] == [x['vid'] == q0.vid for x in want['moments']]
        assert html.unescape(re.search(r'<div id="picked">(.*?)</div>', dom).group(1)) == q0.sentence
    finally:
        srv.shutdown()
