"""Where a video model looks: global-attention maps (DualFormer) and Grad-CAM (any
family), upsampled to the frames.

Two maps, both `float32 [t, h, w]` in [0, 1] for a clip of `t` frames of `h x w` (or
`[b, t, h, w]` for a batch):

- `last_global_attention` (DualFormer): the attention the tokens of the last GP-MSA
  block (global pyramid attention, the last odd block of stage 3) *receive*. Its softmax
  weights are averaged over heads and over all queries, giving one weight per key (the
  weights sum to 1). A key of the pyramid is a pooled token; its weight is split evenly
  over the token-grid cells its pooling window covers (the fine level's kernel, or the
  coarse level's `(1, 7, 7)` x second kernel), so the map is the share of all attention
  that lands on each space-time cell. In the official configurations the last stage's
  GP-MSA does not pool (its fine kernel is 1x1x1): every key is one cell.
- `grad_cam` (DualFormer, LVT, Mobile-Former-3D): Grad-CAM over the last feature map `F`
  for one class (default: the predicted one): `relu(sum_c alpha_c * F[..., c])` with
  `alpha_c` the gradient of the class logit averaged over the grid. Each family names
  its `F` in the registry (`Family.cam_features`: DualFormer and LVT the backbone output
  after its final LayerNorm, Mobile-Former the head's ReLU6'd map before pooling). With
  DualFormer's mean-pool + linear head this is the class activation map: the per-cell
  terms whose sum is the class logit (minus its bias).

Maps are computed on the feature grid, upsampled to the frames with trilinear
interpolation, then min-max normalized per clip (a constant map gives zeros). `overlay`
blends a map onto the frames as a colour heatmap.

Nothing in the model is changed: the attention is recomputed from the block's own `q`
and `kv` projections, captured with Flax's `capture_intermediates`; Grad-CAM intercepts
the `cam_features` submodule's output in the model's own forward pass
(`flax.linen.intercept_methods`) and differentiates the logit w.r.t. a zero added to it.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax import models
from dualformer_jax.data import transforms
from dualformer_jax.models.dualformer import attention as attention_lib
from dualformer_jax.models import dualformer

Variables = Mapping[str, Any]


def last_global_block(model: dualformer.DualFormer) -> tuple[int, int]:
  """`(stage, j)` of the last GP-MSA block (odd `j`) of the deepest stage that has one."""
  for stage in reversed(range(len(model.depths))):
    odd = [j for j in range(model.depths[stage]) if j % 2 == 1]
    if odd:
      return stage, odd[-1]
  raise ValueError(f'The model has no global pyramid block (depths {model.depths}).')


def _prepare(clip: Any, model=None) -> tuple[jax.Array, bool]:
  """uint8 frames are normalized (with `model`'s family statistics, default ImageNet's),
  floats taken as normalized; returns `[b, t, h, w, 3]`."""
  clip_np = clip if isinstance(clip, jax.Array) else np.asarray(clip)
  batched = clip_np.ndim == 5
  if clip_np.ndim not in (4, 5) or clip_np.shape[-1] != 3:
    raise ValueError(f'Expected a clip [t, h, w, 3] or a batch [b, t, h, w, 3], got '
                     f'{tuple(clip_np.shape)}.')
  x = clip_np if batched else clip_np[None]
  if x.dtype == np.uint8:
    if model is None:
      x = transforms.normalize(x)
    else:
      family = models.family_of(model)
      x = transforms.normalize(x, family.mean, family.std)
  return jnp.asarray(x, jnp.float32), batched


def _spread(weights: jax.Array, block: tuple[int, int, int],
            grid: tuple[int, int, int]) -> jax.Array:
  """Pooled-key weights `[b, nd, nh, nw]` -> `[b, d, h, w]`, each split over its window."""
  kd, kh, kw = block
  cells = weights / (kd * kh * kw)
  cells = jnp.repeat(jnp.repeat(jnp.repeat(cells, kd, 1), kh, 2), kw, 3)
  # The pooling drops a remainder (stride = kernel): those cells are no key's.
  pad = [(0, 0)] + [(0, g - s) for g, s in zip(grid, cells.shape[1:])]
  return jnp.pad(cells, pad)


def pyramid_windows(model: dualformer.DualFormer, stage: int
                    ) -> list[tuple[int, int, int]]:
  """The pooling window (in token-grid cells) of each pyramid level's keys at `stage`."""
  resolution = dualformer.stage_resolutions(model.video_size, model.patch_size,
                                            model.temporal_pooling)[stage]
  fine, coarse = dualformer.pyramid_kernels(
      resolution, model.fine_pysizes[stage], model.coarse_pysizes[stage],
      stage in dualformer.COARSE_STAGES)
  windows = [tuple(fine)]
  if int(np.prod(fine)) > 1 and coarse is not None:
    windows.append(tuple(a * b for a, b in zip(attention_lib.COARSE_FIRST_KERNEL, coarse)))
  return windows


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _received_attention(model, variables, x, stage, j):
  """Attention received per token-grid cell `[b, d, h, w]` (sums to 1 over the cells)."""
  target = ('backbone', f'block_{stage}_{j}', 'attn')

  def capture(module, method_name):
    return method_name == '__call__' and module.path in (target + ('q',), target + ('kv',))

  _, state = model.apply(variables, x, train=False, capture_intermediates=capture,
                         mutable=['intermediates'])
  found = state['intermediates']['backbone'][f'block_{stage}_{j}']['attn']
  q = found['q']['__call__'][0]  # [b, d, h, w, c]
  kv = found['kv']['__call__'][0]  # [b, m, 2c]
  b, d, h, w, c = q.shape
  heads = model.num_heads[stage]
  q = q.reshape(b, d * h * w, heads, c // heads)  # [b, n, heads, e]; head-major channels
  k = kv.reshape(b, kv.shape[1], 2, heads, c // heads)[:, :, 0]  # [b, m, heads, e]
  logits = jnp.einsum('bnhe,bmhe->bhnm', q * (c // heads) ** -0.5, k)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)  # [b, heads, n, m]
  per_key = weights.mean(axis=(1, 2))  # [b, m]

  grid = (d, h, w)
  out = jnp.zeros((b, d, h, w), jnp.float32)
  start = 0
  for window in pyramid_windows(model, stage):
    shape = tuple(g // k_ for g, k_ in zip(grid, window))  # keys of this level
    count = int(np.prod(shape))
    level = per_key[:, start:start + count].reshape(b, *shape)
    out = out + _spread(level, window, grid)
    start += count
  if start != per_key.shape[1]:
    raise ValueError(f'{per_key.shape[1]} keys, but the pyramid windows '
                     f'{pyramid_windows(model, stage)} of grid {grid} give {start}.')
  return out


def received_attention(model: dualformer.DualFormer, variables: Variables, clip: Any,
                       block: tuple[int, int] | None = None) -> np.ndarray:
  """Raw attention received per token-grid cell of a GP-MSA block: `[(b,) d, h, w]`.

  Args:
    model, variables: the DualFormer.
    clip: `[t, h, w, 3]` or `[b, t, h, w, 3]`; uint8 frames are normalized first, floats
      are taken as already normalized.
    block: `(stage, j)` of a GP-MSA block (odd `j`); default `last_global_block`.

  Returns:
    The mean over heads and queries of the softmax weights, each key's weight split over
    the cells its pooling window covers; sums to 1 per clip. (Cells of a remainder that
    a pooling level drops get no weight from that level.)
  """
  stage, j = block if block is not None else last_global_block(model)
  if j % 2 != 1:
    raise ValueError(f'block_{stage}_{j} is a local-window block; GP-MSA blocks have odd j.')
  x, batched = _prepare(clip)
  out = np.asarray(_received_attention(model, variables, x, stage, j))
  return out if batched else out[0]


def upsample(maps: Any, size: tuple[int, int, int]) -> np.ndarray:
  """`[(b,) d, h, w]` token-grid maps -> `[(b,) t, H, W]`, trilinear."""
  maps = jnp.asarray(maps, jnp.float32)
  shape = maps.shape[:-3] + tuple(size)
  return np.asarray(jax.image.resize(maps, shape, method='linear'))


def normalize_map(maps: Any) -> np.ndarray:
  """Min-max to [0, 1] per clip (over the last three axes).

  A map that is constant up to float32 rounding (a spread below 1e-5 of its magnitude)
  gives zeros rather than amplified rounding noise.
  """
  maps = np.asarray(maps, np.float32)
  axes = (-3, -2, -1)
  low = maps.min(axis=axes, keepdims=True)
  span = maps.max(axis=axes, keepdims=True) - low
  varies = span > 1e-5 * np.abs(maps).max(axis=axes, keepdims=True)
  return np.where(varies, (maps - low) / np.where(varies, span, 1), 0).astype(np.float32)


def last_global_attention(model: dualformer.DualFormer, variables: Variables, clip: Any,
                          block: tuple[int, int] | None = None) -> np.ndarray:
  """Attention received in the last GP-MSA block, upsampled to the frames, in [0, 1].

  `clip` is `[t, h, w, 3]` (-> `[t, h, w]`) or `[b, t, h, w, 3]` (-> `[b, t, h, w]`);
  uint8 frames are normalized, floats taken as normalized. See the module docstring for
  the definition; `block` picks another GP-MSA block as `(stage, j)`.
  """
  raw = received_attention(model, variables, clip, block)
  return normalize_map(upsample(raw, np.shape(clip)[-4:-1]))


def _run_with_features(model, variables, x, delta=None):
  """`model(x)` in eval mode -> `(logits, features)`, the features being the output of
  the family's `cam_features` submodule, with `delta` added to them when given."""
  path = tuple(models.family_of(model).cam_features.split('/'))
  found = []

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.module.path == path and context.method_name == '__call__':
      found.append(out)
      if delta is not None:
        out = out + delta.astype(out.dtype)
    return out

  with nn.intercept_methods(interceptor):
    logits = model.apply(variables, x, train=False)  # [b, classes]
  if len(found) != 1:
    raise ValueError(f'{type(model).__name__}: the Grad-CAM features '
                     f'{"/".join(path)!r} were computed {len(found)} times (expected once).')
  return logits, found[0]


@functools.partial(jax.jit, static_argnums=(0,))
def _class_activation(model, variables, x, class_index):
  shape = jax.eval_shape(lambda: _run_with_features(model, variables, x)[1])

  def score(delta):
    logits, features = _run_with_features(model, variables, x, delta)
    index = jnp.where(class_index < 0, jnp.argmax(logits, axis=-1), class_index)  # [b]
    return jnp.take_along_axis(logits, index[:, None], axis=1).sum(), (features, index)

  # d logit / d features, as the gradient w.r.t. a zero added to them.
  grads, (features, index) = jax.grad(score, has_aux=True)(
      jnp.zeros(shape.shape, jnp.float32))  # [b, *grid, c]
  grid_axes = tuple(range(1, features.ndim - 1))
  alpha = grads.mean(axis=grid_axes, keepdims=True)  # [b, 1, ..., 1, c]
  return (alpha * features.astype(jnp.float32)).sum(-1), index  # [b, *grid], [b]


def class_activation(model, variables: Variables, clip: Any,
                     class_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Grad-CAM before the ReLU, on the feature grid: `([(b,) *grid], class index per clip)`.

  Any model family: the features `F` are the output of the family's `cam_features`
  submodule (DualFormer and LVT: the backbone, after its final LayerNorm; Mobile-Former:
  the head's ReLU6'd map, before pooling), and the logit is the model's own forward pass.
  The map is `sum_c alpha_c F[..., c]`, `alpha` the grid-mean gradient of the class
  logit w.r.t. `F`. Every family's head starts with a mean over the grid, so the map's
  sum is the first-order term `grad_pooled(logit) . mean(F)`; with DualFormer's linear
  head that is the class logit minus its bias.
  """
  x, batched = _prepare(clip, model)
  index = jnp.full((x.shape[0],), -1 if class_index is None else int(class_index), jnp.int32)
  cam, index = _class_activation(model, variables, x, index)
  cam, index = np.asarray(cam), np.asarray(index)
  return (cam, index) if batched else (cam[0], index[0])


def grad_cam(model, variables: Variables, clip: Any,
             class_index: int | None = None) -> np.ndarray:
  """Grad-CAM over the last feature map for `class_index` (default: the predicted class).

  Any model family (see `class_activation`). `[t, h, w, 3]` -> `[t, h, w]` (or batched),
  upsampled to the frames, in [0, 1].
  """
  cam, _ = class_activation(model, variables, clip, class_index)
  return normalize_map(upsample(np.maximum(cam, 0), np.shape(clip)[-4:-1]))


def overlay(frames: Any, heatmap: Any, alpha: float = 0.5, cmap: str = 'jet') -> np.ndarray:
  """Blends a [0, 1] `heatmap` `[..., h, w]` onto RGB `frames` `[..., h, w, 3]` -> uint8.

  `frames` may be uint8 (0-255) or float in [0, 1]; a heatmap of another size is resized
  to the frames (bilinear).
  """
  import matplotlib  # pylint: disable=import-outside-toplevel

  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    frames = np.clip(np.round(frames * 255), 0, 255).astype(np.uint8)
  heat = np.asarray(heatmap, np.float32)
  if heat.shape != frames.shape[:-1]:
    if heat.ndim != frames.ndim - 1:
      raise ValueError(f'heatmap {heat.shape} does not match frames {frames.shape}.')
    heat = np.asarray(jax.image.resize(heat, frames.shape[:-1], method='linear'))
  colours = matplotlib.colormaps[cmap](np.clip(heat, 0, 1))[..., :3] * 255  # [..., h, w, 3]
  blended = (1 - alpha) * frames.astype(np.float32) + alpha * colours
  return np.clip(np.round(blended), 0, 255).astype(np.uint8)
