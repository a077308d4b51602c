"""Clip sampling with the semantics of mmaction2's ``SampleFrames``.

Both samplers return frame indices of shape ``[num_clips, clip_len]``:
``offset + arange(clip_len) * frame_interval`` for every clip offset, taken
modulo ``num_frames`` (mmaction2's ``out_of_bound_opt='loop'``), so clips
that run past the end of a short video wrap around to its first frames.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_train_indices", "sample_test_indices"]


def _check(num_frames: int, clip_len: int, frame_interval: int, num_clips: int) -> None:
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}.")
    if clip_len <= 0 or frame_interval <= 0 or num_clips <= 0:
        raise ValueError(
            "clip_len, frame_interval and num_clips must be positive, got "
            f"{clip_len}, {frame_interval}, {num_clips}."
        )


def _to_indices(offsets: np.ndarray, num_frames: int, clip_len: int, frame_interval: int) -> np.ndarray:
    inds = offsets.astype(np.int64)[:, None] + np.arange(clip_len, dtype=np.int64)[None, :] * frame_interval
    return np.mod(inds, num_frames)


def sample_train_indices(
    num_frames: int,
    clip_len: int,
    frame_interval: int,
    num_clips: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Random training clips (mmaction2 ``SampleFrames._get_train_clips``).

    With ``span = clip_len * frame_interval`` and
    ``avg = (num_frames - span + 1) // num_clips``:

    * ``avg > 0``: the video is cut into ``num_clips`` segments of ``avg``
      frames and clip ``i`` starts at ``i * avg + randint(avg)``;
    * ``avg == 0`` and ``num_frames > max(num_clips, span)``: offsets are the
      sorted draws of ``randint(num_frames - span + 1)``;
    * ``avg == 0`` otherwise: offsets ``round(i * (num_frames - span + 1) /
      num_clips)`` (deterministic);
    * ``avg < 0`` (video shorter than one clip): every offset is 0 and the
      indices wrap around past the end.

    Args:
      num_frames: number of frames in the video (> 0).
      clip_len: frames per clip.
      frame_interval: temporal stride between sampled frames.
      num_clips: clips to sample.
      rng: the ``np.random.Generator`` that makes the draw (pass a seeded one
        for determinism).

    Returns:
      int64 array ``[num_clips, clip_len]`` of frame indices in
      ``[0, num_frames)``.
    """
    _check(num_frames, clip_len, frame_interval, num_clips)
    span = clip_len * frame_interval
    avg = (num_frames - span + 1) // num_clips
    if avg > 0:
        offsets = np.arange(num_clips) * avg + rng.integers(0, avg, size=num_clips)
    elif num_frames > max(num_clips, span):
        offsets = np.sort(rng.integers(0, num_frames - span + 1, size=num_clips))
    elif avg == 0:
        ratio = (num_frames - span + 1.0) / num_clips
        offsets = np.around(np.arange(num_clips) * ratio)
    else:
        offsets = np.zeros((num_clips,), dtype=np.int64)
    return _to_indices(np.asarray(offsets), num_frames, clip_len, frame_interval)


def sample_test_indices(
    num_frames: int,
    clip_len: int,
    frame_interval: int,
    num_clips: int,
) -> np.ndarray:
    """Uniformly spaced test clips (mmaction2 ``SampleFrames._get_test_clips``).

    With ``span = clip_len * frame_interval`` and
    ``avg = (num_frames - span + 1) / num_clips`` (a float), clip ``i`` starts at
    ``int(i * avg + avg / 2)``, i.e. at the centre of the ``i``-th of
    ``num_clips`` equal segments.

    Edge case (documented choice): when the video is shorter than one clip
    (``num_frames < span``) every offset is 0, as in mmaction2 0.x, and the
    indices wrap around past the end (so all clips are the same looped clip).

    Returns:
      int64 array ``[num_clips, clip_len]`` of frame indices in
      ``[0, num_frames)``. Deterministic.
    """
    _check(num_frames, clip_len, frame_interval, num_clips)
    span = clip_len * frame_interval
    if num_frames >= span:
        avg = (num_frames - span + 1) / float(num_clips)
        offsets = (np.arange(num_clips) * avg + avg / 2.0).astype(np.int64)
    else:
        offsets = np.zeros((num_clips,), dtype=np.int64)
    return _to_indices(offsets, num_frames, clip_len, frame_interval)
