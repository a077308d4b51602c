"""Offline Token Labelling: the frozen teacher's top-k token labels of every video of a
split, stored beside the dataset (`python -m dualformer_jax.token_labelling annotate`).

The canonical view of a video: consecutive clips of the training sampling
(`clip_len` frames, `frame_interval` apart, clip c starting at frame `c * clip_len *
frame_interval`; enough clips to cover every frame, indices past the end wrapping to the
start as the training sampling does), each frame the whole stored frame resized to
`crop_size x crop_size` (bilinear, the aspect ratio not kept). The teacher runs in eval
mode on those clips; each token keeps its `top_k` logits and class indices.

Layout of `DIR/<split>/` (numpy `.npy`, row n = example n of the split's record order):

    values         float32 [N, C, dt, ht, wt, k]  top-k teacher logits, descending
    classes        int32   [N, C, dt, ht, wt, k]  their class indices
    frame_indices  int32   [N, C, T]               the frames of each clip (-1: no clip)
    num_clips      int32   [N]                     clips of each video (<= C)
    box            float32 [N, 4]                  (left, top, right, bottom) in stored
                                                   pixels that each token grid covers
    meta.json      top_k, clip_len, frame_interval, crop_size, num_classes, grid, teacher
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np

from dualformer_jax.data import pipeline
from dualformer_jax.data import transforms
from dualformer_jax.token_labelling import teacher as teacher_lib

FILES = ('values', 'classes', 'frame_indices', 'num_clips', 'box')


def canonical_indices(num_frames: int, clip_len: int, frame_interval: int) -> np.ndarray:
  """Frame indices `[C, clip_len]` of the consecutive clips covering a video."""
  span = clip_len * frame_interval
  num_clips = max(1, math.ceil(num_frames / span))
  starts = np.arange(num_clips, dtype=np.int64)[:, None] * span
  return np.mod(starts + np.arange(clip_len)[None, :] * frame_interval, num_frames)


def canonical_clips(frames: Sequence[bytes], num_frames: int, *, clip_len: int,
                    frame_interval: int, crop_size: int
                    ) -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray]:
  """`(frame_indices [C, T], box, uint8 clips [C, T, s, s, 3])` of the canonical view."""
  idx = canonical_indices(num_frames, clip_len, frame_interval)  # [C, T]
  w, h = transforms._frame_size(frames[int(idx[0, 0])])  # pylint: disable=protected-access
  box = (0.0, 0.0, float(w), float(h))
  unique, rendered = transforms._render_frames(  # pylint: disable=protected-access
      frames, idx.ravel(), [box], crop_size)  # [1, n, s, s, 3]
  clips = rendered[0, np.searchsorted(unique, idx)]  # [C, T, s, s, 3]
  return idx, box, clips


def make_labeller(teacher: teacher_lib.Teacher, top_k: int,
                  normalization: tuple[Sequence[float], Sequence[float]]) -> Callable:
  """A jitted `uint8 clips [b, T, H, W, 3] -> (values, classes) [b, dt, ht, wt, k]`."""
  from dualformer_jax import data  # pylint: disable=import-outside-toplevel

  @jax.jit
  def label(variables, video):
    logits = teacher_lib.token_logits(teacher.model, variables,
                                      data.normalize(video, *normalization))
    return jax.lax.top_k(logits, top_k)  # [b, dt, ht, wt, k] x 2

  return lambda video: label(teacher.variables, video)


def annotate_split(*, name: str, data_dir: str, split: str, teacher: teacher_lib.Teacher,
                   output: str, top_k: int, clip_len: int, frame_interval: int,
                   crop_size: int, normalization, batch_size: int = 8,
                   progress: bool = True) -> dict[str, Any]:
  """Labels every video of `split` and writes `output/<split>/` (module docstring).

  Clips go through the teacher `batch_size` at a time (the last batch padded: one
  compilation). Returns the metadata written to `meta.json`.
  """
  import tqdm  # pylint: disable=import-outside-toplevel
  source = pipeline._source(name, data_dir, split)  # pylint: disable=protected-access
  n = len(source)
  num_classes = int(teacher.model.num_classes)
  if not 1 <= top_k <= num_classes:
    raise ValueError(f'top_k={top_k} must be between 1 and the teacher\'s {num_classes} '
                     'classes.')
  counts = [int(pipeline._parse(source[i])['num_frames']) for i in range(n)]  # pylint: disable=protected-access
  max_clips = max(len(canonical_indices(c, clip_len, frame_interval)) for c in counts)
  grid = teacher_lib.token_grid(teacher.model)
  folder = os.path.join(output, split)
  os.makedirs(folder, exist_ok=True)
  shape = (n, max_clips, *grid, top_k)
  mm = np.lib.format.open_memmap
  out = {
      'values': mm(os.path.join(folder, 'values.npy'), 'w+', np.float32, shape),
      'classes': mm(os.path.join(folder, 'classes.npy'), 'w+', np.int32, shape),
      'frame_indices': np.full((n, max_clips, clip_len), -1, np.int32),
      'num_clips': np.zeros((n,), np.int32),
      'box': np.zeros((n, 4), np.float32),
  }
  label = make_labeller(teacher, top_k, normalization)
  pending: list[tuple[int, int, np.ndarray]] = []  # (example, clip, uint8 [T, s, s, 3])

  def flush():
    video = np.zeros((batch_size, clip_len, crop_size, crop_size, 3), np.uint8)
    for j, (_, _, clip) in enumerate(pending):
      video[j] = clip
    values, classes = jax.device_get(label(video))  # [b, dt, ht, wt, k]
    for j, (i, c, _) in enumerate(pending):
      out['values'][i, c], out['classes'][i, c] = values[j], classes[j]
    pending.clear()

  for i in tqdm.trange(n, desc=f'annotate {split}', unit='video', disable=not progress):
    example = pipeline._parse(source[i])  # pylint: disable=protected-access
    idx, box, clips = canonical_clips(example['video'], int(example['num_frames']),
                                      clip_len=clip_len, frame_interval=frame_interval,
                                      crop_size=crop_size)
    out['frame_indices'][i, :len(idx)] = idx
    out['num_clips'][i] = len(idx)
    out['box'][i] = box
    for c, clip in enumerate(clips):
      pending.append((i, c, clip))
      if len(pending) == batch_size:
        flush()
  if pending:
    flush()
  for key in ('values', 'classes'):
    out[key].flush()
  for key in ('frame_indices', 'num_clips', 'box'):
    np.save(os.path.join(folder, f'{key}.npy'), out[key])
  meta = {'dataset': name, 'split': split, 'num_videos': n, 'top_k': int(top_k),
          'clip_len': int(clip_len), 'frame_interval': int(frame_interval),
          'crop_size': int(crop_size), 'num_classes': num_classes,
          'grid': [int(g) for g in grid], 'teacher': teacher.source}
  with open(os.path.join(folder, 'meta.json'), 'w') as f:
    json.dump(meta, f, indent=1)
  return meta
