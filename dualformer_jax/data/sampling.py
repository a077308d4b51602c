"""Clip sampling: mmaction2's ``SampleFrames`` (dense) and TSN-style segments.

The dense samplers return frame indices of shape ``[num_clips, clip_len]``:
``offset + arange(clip_len) * frame_interval`` for every clip offset, taken
modulo ``num_frames`` (mmaction2's ``out_of_bound_opt='loop'``), so clips
that run past the end of a short video wrap around to its first frames.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "sample_segment_test_indices",
    "sample_segment_train_indices",
    "sample_test_indices",
    "sample_train_indices",
]


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


def _segment_bounds(num_frames: int, num_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive ``[start, end]`` of each segment: size ``s = (num_frames - 1) / num_segments``,
    segment ``i`` spans ``[round(i s), round((i + 1) s)]`` (numpy rounding, half to even)."""
    if num_frames <= 0 or num_segments <= 0:
        raise ValueError(f"num_frames and num_segments must be positive, got {num_frames}, "
                         f"{num_segments}.")
    size = (num_frames - 1) / num_segments
    i = np.arange(num_segments)
    return np.round(size * i).astype(np.int64), np.round(size * (i + 1)).astype(np.int64)


def sample_segment_train_indices(num_frames: int, num_segments: int,
                                 rng: np.random.Generator) -> np.ndarray:
    """TSN-style training frames (the LVT/SlowFast SSv2 loader): one uniformly random
    frame of each segment (both ends included). int64 ``[num_segments]``, sorted."""
    start, end = _segment_bounds(num_frames, num_segments)
    return rng.integers(start, end + 1).astype(np.int64)


def sample_segment_test_indices(num_frames: int, num_segments: int,
                                num_clips: int = 1) -> np.ndarray:
    """TSN-style test frames, int64 ``[num_clips, num_segments]``: clip 0 takes the
    middle ``(start + end) // 2`` of each segment, clip 1 its start (the official
    second SSv2 test view). At most 2 clips. Deterministic."""
    if num_clips not in (1, 2):
        raise ValueError(f"segment sampling has 1 or 2 test clips, got {num_clips}.")
    start, end = _segment_bounds(num_frames, num_segments)
    return np.stack([(start + end) // 2, start][:num_clips])
