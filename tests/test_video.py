"""Features from video files (notebooks 20-21) against independent implementations.

- The CLIP image tower equals Hugging Face's `CLIPVisionModelWithProjection` with the same random weights (a tiny
  tower and the ViT-B/32 sizes), after the weights went through a file in OpenAI's released key layout.
"""
import numpy as np
import pytest
import torch

from mesm_prem.clip_vision import ClipVisionConfig, ClipVisionTower, clip_preprocess, load_clip_vision_tower
from mesm_prem.text import _CLIP_BLOCK_NAMES


def _randomize(m):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters(): p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def _openai_layout(tower) -> dict:
    inv = {v: k for k, v in _CLIP_BLOCK_NAMES.items()}
    sd = {}
    for k, v in tower.state_dict().items():
        if k.startswith('blocks.'):
            _, i, rest = k.split('.', 2); sd[f'visual.transformer.resblocks.{i}.{inv[rest]}'] = v
        else: sd[f'visual.{k}'] = v
    return sd


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
