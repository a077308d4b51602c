"""Attention maps and Grad-CAM: the true attention of the block, shapes, behaviour; Grad-CAM
of every family against its head's own gradient."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualformer_jax import attention_maps
from dualformer_jax import models
from dualformer_jax.data import synthetic
from dualformer_jax.data import transforms
from test_model import random_variables


@pytest.fixture(scope='module')
def nano():
  model = models.create_model('nano', num_classes=8)
  return model, random_variables(model, seed=1)


@pytest.fixture(scope='module')
def clip():
  """A real synthetic clip: uint8 [8, 64, 64, 3], a shape moving right."""
  return synthetic.render_motion_video(4, np.random.default_rng(0), num_frames=8, size=64)


def _captured(model, variables, clip, stage, j):
  """q, kv and the output of block (stage, j)'s GP-MSA, captured from the real forward."""
  target = ('backbone', f'block_{stage}_{j}', 'attn')
  capture = lambda m, name: name == '__call__' and m.path[:3] == target and len(m.path) <= 4
  apply = jax.jit(lambda v, x: model.apply(v, transforms.normalize(x), train=False,
                                           capture_intermediates=capture,
                                           mutable=['intermediates'])[1])
  state = apply(variables, clip[None])
  found = state['intermediates']['backbone'][f'block_{stage}_{j}']['attn']
  return (np.asarray(found['q']['__call__'][0]), np.asarray(found['kv']['__call__'][0]),
          np.asarray(found['__call__'][0]))


@pytest.mark.parametrize('block', [(0, 1), (3, 1)])
def test_received_attention_is_the_blocks_attention(nano, clip, block):
  """Weights rebuilt from q and k reproduce the block's output; the map is their mean.

  Block (0, 1) pools keys at two levels (fine (2, 4, 4); coarse (4, 7, 7) windows that
  leave a remainder of the 16x16 grid); block (3, 1) attends to every token.
  """
  model, variables = nano
  stage, j = block
  q, kv, out = _captured(model, variables, clip, stage, j)
  _, d, h, w, c = q.shape
  heads = model.num_heads[stage]
  e = c // heads
  qh = q.reshape(d * h * w, heads, e).astype(np.float64)
  kvh = kv[0].reshape(-1, 2, heads, e).astype(np.float64)
  logits = np.einsum('nhe,mhe->hnm', qh / np.sqrt(e), kvh[:, 0])
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)  # [heads, n, m]
  mixed = np.einsum('hnm,mhe->nhe', weights, kvh[:, 1]).reshape(d, h, w, c)
  proj = variables['params']['backbone'][f'block_{stage}_{j}']['attn']['proj']
  rebuilt = mixed @ np.asarray(proj['kernel'], np.float64) + np.asarray(proj['bias'])
  np.testing.assert_allclose(rebuilt, out[0], rtol=1e-4, atol=1e-5)

  # The map: each key's mean weight spread evenly over its pooling window.
  per_key = weights.mean(axis=(0, 1))
  expected = np.zeros((d, h, w))
  start = 0
  for window in attention_maps.pyramid_windows(model, stage):
    shape = tuple(g // k for g, k in zip((d, h, w), window))
    level = per_key[start:start + int(np.prod(shape))].reshape(shape)
    cells = np.kron(level, np.ones(window)) / np.prod(window)
    expected[:cells.shape[0], :cells.shape[1], :cells.shape[2]] += cells
    start += level.size
  assert start == per_key.size
  got = attention_maps.received_attention(model, variables, clip, block)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
  assert got.sum() == pytest.approx(1.0, abs=1e-5)
  if block == (0, 1):
    assert attention_maps.pyramid_windows(model, 0) == [(2, 4, 4), (4, 7, 7)]
    assert np.all(expected[:, 14:, 14:] > 0)  # fine keys still reach the remainder


def test_shapes_and_range(nano, clip):
  model, variables = nano
  assert attention_maps.last_global_block(model) == (3, 1)
  heats = {}
  for fn in (attention_maps.last_global_attention, attention_maps.grad_cam):
    heats[fn] = heat = fn(model, variables, clip)
    assert heat.shape == (8, 64, 64) and heat.dtype == np.float32
    assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
  batch = attention_maps.last_global_attention(model, variables,
                                               np.stack([clip, clip[:, ::-1]]))
  assert batch.shape == (2, 8, 64, 64)
  np.testing.assert_allclose(batch[0], heats[attention_maps.last_global_attention],
                             atol=1e-5)
  # Float input is taken as normalized: the same map as the uint8 frames.
  normalized = np.asarray(transforms.normalize(clip))
  np.testing.assert_allclose(attention_maps.last_global_attention(model, variables, normalized),
                             attention_maps.last_global_attention(model, variables, clip),
                             atol=1e-5)
  with pytest.raises(ValueError, match='local-window'):
    attention_maps.received_attention(model, variables, clip, block=(3, 0))


def test_keys_without_content_give_a_flat_map(nano, clip):
  """Zero keys: every query spreads its attention evenly, so every cell gets 1 / n."""
  model, variables = nano
  params = flax.core.unfreeze(jax.tree_util.tree_map(np.array, variables['params']))
  kv = params['backbone']['block_3_1']['attn']['kv']
  c = kv['kernel'].shape[0]
  kv['kernel'][:, :c] = 0  # key half of the [k | v] projection
  kv['bias'][:c] = 0
  flat = {**variables, 'params': params}
  received = attention_maps.received_attention(model, flat, clip)
  np.testing.assert_allclose(received, np.full((4, 2, 2), 1 / 16), rtol=1e-5)
  assert not np.any(attention_maps.last_global_attention(model, flat, clip))
  # The real keys do not attend evenly, and the map follows the input.
  real = attention_maps.received_attention(model, variables, clip)
  moved = attention_maps.received_attention(model, variables, np.roll(clip, 32, axis=2))
  assert np.ptp(real) > 1e-3 and np.abs(moved - real).max() > 1e-3


def test_class_activation_decomposes_the_logit(nano, clip):
  """The pre-ReLU map sums over the grid to the class logit, less the head's bias."""
  model, variables = nano
  x = transforms.normalize(clip[None])
  logits = np.asarray(jax.jit(model.apply)(variables, x))[0]
  bias = np.asarray(variables['params']['head']['fc_cls']['bias'])
  cam, index = attention_maps.class_activation(model, variables, clip)
  assert cam.shape == (4, 2, 2) and index == logits.argmax()
  assert cam.sum() + bias[index] == pytest.approx(logits[index], abs=1e-4)
  cam3, index3 = attention_maps.class_activation(model, variables, clip, class_index=3)
  assert index3 == 3 and cam3.sum() + bias[3] == pytest.approx(logits[3], abs=1e-4)


@pytest.mark.parametrize('quadrant', [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_grad_cam_follows_a_local_change(nano, clip, quadrant):
  """Inverting the colours of one quadrant changes the map of the predicted class most in
  that quadrant (the last stage's grid is 4x2x2: one cell column per quadrant)."""
  model, variables = nano
  y, x = quadrant
  changed = clip.copy()
  region = changed[:, 32 * y:32 * (y + 1), 32 * x:32 * (x + 1)]
  changed[:, 32 * y:32 * (y + 1), 32 * x:32 * (x + 1)] = 255 - region
  before, predicted = attention_maps.class_activation(model, variables, clip)
  after, _ = attention_maps.class_activation(model, variables, changed, class_index=predicted)
  change = np.abs(after - before).mean(axis=0)  # [2, 2] over the last stage's 32x32 cells
  assert np.unravel_index(change.argmax(), change.shape) == quadrant


def test_overlay():
  frames = np.full((2, 8, 8, 3), 100, np.uint8)
  heat = np.zeros((2, 8, 8), np.float32)
  heat[:, :4] = 1.0
  np.testing.assert_array_equal(attention_maps.overlay(frames, heat, alpha=0.0), frames)
  full = attention_maps.overlay(frames, heat, alpha=1.0, cmap='gray')
  assert full.dtype == np.uint8 and full.shape == (2, 8, 8, 3)
  assert np.all(full[:, :4] == 255) and np.all(full[:, 4:] == 0)
  half = attention_maps.overlay(frames, heat[:, ::2, ::2], alpha=0.5, cmap='gray')  # resized
  assert half.shape == (2, 8, 8, 3) and half[0, 0, 0, 0] == 178 and half[0, 7, 0, 0] == 50


# ------------------------------------------------------- Grad-CAM of the other families


def _grad_of_class(fn, inputs, k):
  """d fn(inputs)[0, k] / d inputs."""
  return np.asarray(jax.grad(lambda v: fn(v)[0, k])(jnp.asarray(inputs)))


def test_grad_cam_lvt_is_the_feature_map_times_the_pooled_gradient():
  """LVT: features [t, G, G, c] -> mean over the grid -> VVTHead. The map must be
  F . grad_pooled(logit) / G^2 per cell, the gradient taken through the head alone."""
  model = models.create_model('lvt_mini', num_classes=6)
  variables = random_variables(model, seed=3)
  clip = synthetic.render_motion_video(2, np.random.default_rng(1), num_frames=16, size=64)
  family = models.family_of(model)  # uint8 clips are normalized with its statistics
  x = transforms.normalize(clip[None], family.mean, family.std)
  logits = np.asarray(jax.jit(model.apply)(variables, x))[0]
  features = np.asarray(model.apply(variables, x, method='extract_features'))  # [1,t,G,G,c]
  g = features.shape[2]
  frames = features.mean(axis=(2, 3))  # [1, t, c]
  head = lambda f: model.apply(variables, f, False, method=lambda m, f_, t: m.head(f_, t))
  np.testing.assert_allclose(np.asarray(head(frames))[0], logits, rtol=1e-4, atol=1e-5)

  cam, index = attention_maps.class_activation(model, variables, clip)
  assert index == logits.argmax() and cam.shape == features.shape[1:4]
  grad_frames = _grad_of_class(head, frames, index)  # [1, t, c]
  expected = np.einsum('thwc,c->thw', features[0], grad_frames[0].mean(0)) / g ** 2
  np.testing.assert_allclose(cam, expected, rtol=1e-3, atol=1e-6)
  assert np.ptp(cam) > 1e-4  # a map, not a constant
  heat = attention_maps.grad_cam(model, variables, clip, class_index=2)
  assert heat.shape == clip.shape[:3] and heat.min() == 0.0 and heat.max() == pytest.approx(1)


def _hswish(v):
  return v * jnp.clip(v + 3, 0, 6) / 6


def test_grad_cam_mobile_former_3d_is_the_feature_map_times_the_pooled_gradient():
  """Mobile-Former-3D: the head's ReLU6'd map [t, h, w, 6 C_L] -> mean -> h_swish, with
  token 0 -> Linear -> BatchNorm -> h_swish -> Linear. The head is rebuilt here from its
  parameters (it must give the model's logits); the map must be F . grad_pooled / n."""
  model = models.create_model('mobile_former_3d_xs', num_classes=5, video_size=(4, 64, 64))
  variables = random_variables(model, seed=4)
  clip = synthetic.render_motion_video(1, np.random.default_rng(2), num_frames=4, size=64)
  family = models.family_of(model)
  x = transforms.normalize(clip[None], family.mean, family.std)
  logits, state = jax.jit(lambda v, x_: model.apply(v, x_, mutable=['intermediates']))(
      variables, x)  # one forward: logits, token 0 and the head's map before its ReLU6
  logits = np.asarray(logits)[0]
  token = np.asarray(state['intermediates']['head']['fc_in'][0])[:, -model.token_dim:]
  features = np.clip(np.asarray(state['intermediates']['head']['conv_output'][0]), 0, 6)
  assert features.shape == (1, 4, 2, 2, 6 * model.blocks[-1][2])

  p, s = variables['params']['head'], variables['batch_stats']['head']

  def head(pooled):  # [1, 6 C_L] -> [1, classes]
    y = jnp.concatenate([_hswish(pooled), token], -1) @ p['fc']['kernel'] + p['fc']['bias']
    bn = s['fc_bn']
    y = (y - bn['mean']) / jnp.sqrt(bn['var'] + 1e-5) * p['fc_bn']['scale'] + p['fc_bn']['bias']
    return _hswish(y) @ p['classifier']['kernel'] + p['classifier']['bias']

  pooled = features.mean(axis=(1, 2, 3))
  np.testing.assert_allclose(np.asarray(head(pooled))[0], logits, rtol=1e-4, atol=1e-5)
  cam, index = attention_maps.class_activation(model, variables, clip)
  assert index == logits.argmax() and cam.shape == (4, 2, 2)
  expected = np.einsum('thwc,c->thw', features[0], _grad_of_class(head, pooled, index)[0])
  np.testing.assert_allclose(cam, expected / 16, rtol=1e-3, atol=1e-6)
  assert np.ptp(cam) > 1e-4
  heat = attention_maps.grad_cam(model, variables, clip)
  assert heat.shape == (4, 64, 64) and heat.min() == 0.0 and heat.max() == pytest.approx(1)
