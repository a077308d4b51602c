"""Stored (offline) token labels -> the soft targets of one training clip.

`TokenLabels(DIR, split)` reads what `annotate` wrote; `labels.targets(example, frame_indices,
box, grid)` maps that example's stored maps onto a clip given its frame indices and crop box
(as offline score maps are cropped with the image in image Token Labelling):

- time: the stored clip with exactly the clip's frames if there is one (its tokens, in
  order), else for each of the clip's teacher tokens the stored token whose frames are
  nearest (the least sum of absolute frame differences);
- each chosen token's top-k logits become soft targets as on-line (`targets.soft_targets`:
  the other classes at `fill`, softmax);
- space: each student token's centre in stored pixels is located on the stored grid
  (which covers the stored `box`), and the neighbouring targets are mixed bilinearly
  (`'bilinear'`) or the nearest taken (`'nearest'`); `flip` mirrors the clip;
- frames of the teacher's grid that do not equal the student's are averaged onto it
  (`targets.temporal_average`) after the softmax (on-line: before the top-k).

For the canonical view itself (same frames, the stored box) and teacher and student grids
that agree, the result equals the on-line targets (a test); otherwise it approximates them.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from dualformer_jax.errors import ConfigError
from dualformer_jax.token_labelling import targets as targets_lib

SPATIAL_MODES = ('bilinear', 'nearest')


def _softmax(x: np.ndarray) -> np.ndarray:
  x = x - x.max(axis=-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=-1, keepdims=True)


def _axis(lo: float, hi: float, lo0: float, hi0: float, n: int, n0: int, mode: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """For `n` cells over `[lo, hi]`: stored cells `(i0, i1, weight of i1)` of a grid of `n0`
  cells over `[lo0, hi0]`, by the cells' centres."""
  centres = lo + (np.arange(n) + 0.5) * (hi - lo) / n
  g = (centres - lo0) / (hi0 - lo0) * n0 - 0.5  # position on the stored grid
  g = np.clip(g, 0.0, n0 - 1.0)
  if mode == 'nearest':
    i = np.floor(g + 0.5).astype(np.int64)
    return i, i, np.zeros(n)
  i0 = np.floor(g).astype(np.int64)
  i1 = np.minimum(i0 + 1, n0 - 1)
  return i0, i1, g - i0


class TokenLabels:
  """The stored labels of one split (`DIR/<split>/`), memory-mapped."""

  def __init__(self, directory: str, split: str):
    folder = os.path.join(directory, split)
    meta = os.path.join(folder, 'meta.json')
    if not os.path.isfile(meta):
      raise ConfigError(f'no token labels for split {split!r} in {directory} (run `python -m '
                        'dualformer_jax.token_labelling annotate` first).')
    with open(meta) as f:
      self.meta = json.load(f)
    self.values = np.load(os.path.join(folder, 'values.npy'), mmap_mode='r')
    self.classes = np.load(os.path.join(folder, 'classes.npy'), mmap_mode='r')
    self.frame_indices = np.load(os.path.join(folder, 'frame_indices.npy'))
    self.num_clips = np.load(os.path.join(folder, 'num_clips.npy'))
    self.box = np.load(os.path.join(folder, 'box.npy'))

  def __len__(self) -> int:
    return len(self.num_clips)

  def targets(self, example: int, frame_indices: Sequence[int], box: Sequence[float],
              grid: Sequence[int], *, top_k: int = 5, fill: float = 0.0,
              temporal: str = 'interleaved', spatial: str = 'bilinear',
              flip: bool = False) -> np.ndarray:
    """Soft targets float32 `[d, h, w, K]` of a clip of `example` on the student `grid`.

    Args:
      example: the example's position in the split (record order).
      frame_indices: the clip's `T` frame indices (the stored clips' length).
      box: the clip's crop `(left, top, right, bottom)` in stored-frame pixels.
      grid: the student's token grid `(d, h, w)`.
      top_k, fill, temporal: as `targets.soft_targets`; `top_k` at most the stored k.
      spatial: `'bilinear'` or `'nearest'`.
      flip: the clip was mirrored horizontally after the crop.
    """
    if spatial not in SPATIAL_MODES:
      raise ValueError(f'spatial mode {spatial!r}: choose one of {SPATIAL_MODES}.')
    stored_k, num_classes = self.meta['top_k'], self.meta['num_classes']
    if not 1 <= top_k <= stored_k:
      raise ConfigError(f'top_k={top_k}: the stored token labels keep {stored_k} classes '
                        'per token.')
    frame_indices = np.asarray(frame_indices, np.int64)
    c_n = int(self.num_clips[example])
    stored = self.frame_indices[example, :c_n].astype(np.int64)  # [C, T]
    if frame_indices.shape != stored.shape[1:]:
      raise ConfigError(f'the clip has {frame_indices.size} frames, the stored clips '
                        f'{stored.shape[1]}: annotate with the training clip length.')
    _, dt, ht, wt, _ = self.values.shape[1:]
    s = frame_indices.size // dt  # frames per teacher token
    exact = np.flatnonzero((stored == frame_indices[None]).all(axis=1))
    if exact.size:
      clip_of = np.full(dt, exact[0])
      token_of = np.arange(dt)
    else:  # nearest stored token window for each of the clip's teacher tokens
      windows = stored[:, :dt * s].reshape(c_n, dt, s)  # [C, dt, s]
      wanted = frame_indices[:dt * s].reshape(dt, s)  # [dt, s]
      dist = np.abs(windows[None] - wanted[:, None, None]).sum(-1)  # [dt, C, dt]
      flat = dist.reshape(dt, -1).argmin(axis=1)
      clip_of, token_of = flat // dt, flat % dt
    values = np.asarray(self.values[example])[clip_of, token_of, ..., :top_k]  # [dt, ht, wt, k]
    classes = np.asarray(self.classes[example])[clip_of, token_of, ..., :top_k]
    logits = np.full((dt, ht, wt, num_classes), fill, np.float32)
    np.put_along_axis(logits, classes.astype(np.int64), values, axis=-1)
    probs = _softmax(logits.astype(np.float64))  # [dt, ht, wt, K]

    d, h, w = (int(g) for g in grid)
    l0, t0, r0, b0 = (float(v) for v in self.box[example])
    left, top, right, bottom = (float(v) for v in box)
    y0, y1, wy = _axis(top, bottom, t0, b0, h, ht, spatial)
    x0, x1, wx = _axis(left, right, l0, r0, w, wt, spatial)
    if flip:  # output column x shows crop column w - 1 - x
      x0, x1, wx = x0[::-1], x1[::-1], wx[::-1]
    wy, wx = wy[None, :, None, None], wx[None, None, :, None]
    rows0, rows1 = probs[:, y0], probs[:, y1]  # [dt, h, wt, K]
    out = ((1 - wy) * ((1 - wx) * rows0[:, :, x0] + wx * rows0[:, :, x1])
           + wy * ((1 - wx) * rows1[:, :, x0] + wx * rows1[:, :, x1]))  # [dt, h, w, K]
    if dt != d:
      out = np.asarray(targets_lib.temporal_average(out[None], d, temporal))[0]
    return out.astype(np.float32)  # [d, h, w, K]

  def batch_targets(self, batch: dict[str, np.ndarray], grid: Sequence[int],
                    **kwargs) -> np.ndarray:
    """Soft targets float32 `[b, d, h, w, K]` of a `with_meta` training batch."""
    return np.stack([self.targets(int(i), f, bx, grid, flip=bool(fl), **kwargs)
                     for i, f, bx, fl in zip(batch['index'], batch['frame_indices'],
                                             batch['box'], batch['flip'])])


META_KEYS = ('index', 'frame_indices', 'box', 'flip')


class AddTargets:
  """A batch map (`grain.IterDataset.map`): adds `'targets'` from the stored labels and
  drops the clip's where-from keys."""

  def __init__(self, labels: TokenLabels, grid: Sequence[int], **kwargs):
    self._labels, self._grid, self._kwargs = labels, tuple(grid), kwargs

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {k: v for k, v in batch.items() if k not in META_KEYS}
    out['targets'] = self._labels.batch_targets(batch, self._grid, **self._kwargs)
    return out
