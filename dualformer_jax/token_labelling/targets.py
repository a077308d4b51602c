"""Soft token targets from a teacher's per-token logits (official `Recognizer3D_TL` and
`SoftCE_TL`): temporal averaging onto the student's grid, top-k masking, softmax."""

from typing import Sequence

import jax
import jax.numpy as jnp

TEMPORAL_MODES = ('interleaved', 'adjacent')


def temporal_average(teacher_logits: jax.Array, depth: int,
                     mode: str = 'interleaved') -> jax.Array:
  """`[b, dt, h, w, K]` -> `[b, depth, h, w, K]`, averaging `r = dt // depth` frames each.

  `'interleaved'` (official): student frame i gets the mean of teacher frames
  i, i + depth, i + 2 depth, ... (the official view as `(b, r, depth, ...)`).
  `'adjacent'` (an option): the mean of frames r i, ..., r i + r - 1.
  Unchanged when `dt == depth`.
  """
  b, dt, h, w, k = teacher_logits.shape
  if dt == depth:
    return teacher_logits
  if mode not in TEMPORAL_MODES:
    raise ValueError(f'temporal mode {mode!r}: choose one of {TEMPORAL_MODES}.')
  if depth <= 0 or dt % depth:
    raise ValueError(f'the teacher token grid has {dt} frames, which do not average onto '
                     f'the student\'s {depth} (need a multiple).')
  r = dt // depth
  x = teacher_logits.astype(jnp.float32)
  if mode == 'interleaved':
    x = x.reshape(b, r, depth, h, w, k).mean(axis=1)  # [b, depth, h, w, K]
  else:
    x = x.reshape(b, depth, r, h, w, k).mean(axis=2)
  return x


def mask_top_k(logits: jax.Array, top_k: int = 5, fill: float = 0.0) -> jax.Array:
  """Keeps each row's entries `>=` its k-th largest (ties kept); the rest become `fill`.

  Official: `fill = 0` (the other classes keep probability `1 / sum(exp(q))` each);
  `fill = -inf` gives a softmax over the top k alone.
  """
  if logits.shape[-1] < top_k:
    raise ValueError(f'top_k={top_k} needs at least {top_k} classes, got {logits.shape[-1]}.')
  kth = jax.lax.top_k(logits, top_k)[0][..., -1:]  # [..., 1]
  return jnp.where(logits >= kth, logits, jnp.asarray(fill, logits.dtype))


def soft_targets(teacher_token_logits: jax.Array, grid: Sequence[int], top_k: int = 5, *,
                 temporal: str = 'interleaved', fill: float = 0.0) -> jax.Array:
  """Teacher token logits `[b, dt, h, w, K]` -> soft targets `[b, d, h, w, K]` on the
  student's token `grid = (d, h, w)`: temporal averaging, top-k masking, softmax.

  The spatial grids must agree (the official code has no spatial resampling).
  """
  d, h, w = (int(g) for g in grid)
  if tuple(teacher_token_logits.shape[2:4]) != (h, w):
    raise ValueError(f'teacher token grid {tuple(teacher_token_logits.shape[1:4])} and '
                     f'student grid {(d, h, w)} differ in space: they must agree.')
  averaged = temporal_average(teacher_token_logits, d, temporal)  # [b, d, h, w, K]
  masked = mask_top_k(averaged.astype(jnp.float32), top_k, fill)
  return jax.nn.softmax(masked, axis=-1)
