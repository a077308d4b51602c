"""Frame decoding and spatial transforms of the input pipeline (host side),
plus the on-device ``normalize``.

All spatial ops of a clip share one crop box and are done in one FFmpeg
(swscale) pass per frame, straight from the decoded JPEG: a short-side
resize followed by a crop and a resize to ``crop_size`` is the same as
resizing the matching box of the stored frame (rounded to whole stored
pixels), so no intermediate image is ever materialised.
"""

from __future__ import annotations

import fractions
import io
import math
from typing import Sequence

import av
import numpy as np
from PIL import Image

from dualformer_jax.data import augment
from dualformer_jax.data.sampling import (
    sample_segment_test_indices, sample_segment_train_indices, sample_test_indices,
    sample_train_indices,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "center_crop_box",
    "eval_views",
    "normalize",
    "random_resized_crop_box",
    "three_crop_boxes",
    "train_clip",
]

#: Clip normalisation of the official recipes, on the 0-255 RGB scale.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

Box = tuple[float, float, float, float]  # (left, top, right, bottom) in stored-frame pixels
IntBox = tuple[int, int, int, int]

#: swscale flags of the crop resize: bilinear; chroma interpolated at full
#: resolution (as accurate as libjpeg + Pillow: without it, colour edges are
#: off by up to 100 levels); the same bits on every CPU.
_SCALE_FLAGS = "bilinear+full_chroma_int+accurate_rnd+bitexact"


def normalize(video, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """``(video - mean) / std`` as float32 (jnp; use inside jit).

    Accepts uint8 or float ``[..., 3]`` RGB on the 0-255 scale (``mean`` and ``std``
    too; default ImageNet's); the pipelines send uint8 so the host->device copy is 4x
    smaller than float32.
    """
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    x = jnp.asarray(video).astype(jnp.float32)
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (x - mean) / std


def _scaled_hw(h: int, w: int, short_side: int | None) -> tuple[float, int, int]:
    """(scale, h', w') of a short-side resize (mmaction2 ``Resize((-1, s))``)."""
    if not short_side:
        return 1.0, h, w
    scale = short_side / min(h, w)
    if h <= w:
        return scale, short_side, int(round(w * scale))
    return scale, int(round(h * scale)), short_side


def random_resized_crop_box(
    h: int, w: int, area_range: Sequence[float], aspect_range: Sequence[float],
    rng: np.random.Generator, max_attempts: int = 10,
) -> tuple[int, int, int, int]:
    """mmaction2 ``RandomResizedCrop``: area fraction uniform in ``area_range``,
    aspect ratio log-uniform in ``aspect_range``; first of ``max_attempts``
    candidates that fits, else the centred square of side ``min(h, w)``."""
    area = h * w
    log_ar = (math.log(aspect_range[0]), math.log(aspect_range[1]))
    ratios = np.exp(rng.uniform(*log_ar, size=max_attempts))
    areas = rng.uniform(*area_range, size=max_attempts) * area
    cws = np.round(np.sqrt(areas * ratios)).astype(np.int64)
    chs = np.round(np.sqrt(areas / ratios)).astype(np.int64)
    for cw, ch in zip(cws, chs):
        if 0 < cw <= w and 0 < ch <= h:
            x = int(rng.integers(0, w - cw + 1))
            y = int(rng.integers(0, h - ch + 1))
            return x, y, x + int(cw), y + int(ch)
    s = min(h, w)
    x, y = (w - s) // 2, (h - s) // 2
    return x, y, x + s, y + s


def center_crop_box(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """mmaction2 ``CenterCrop``: ``left = (w - size) // 2``, ``top = (h - size) // 2``."""
    x, y = (w - size) // 2, (h - size) // 2
    return x, y, x + size, y + size


def three_crop_boxes(h: int, w: int, size: int) -> list[tuple[int, int, int, int]]:
    """mmaction2 ``ThreeCrop``: three ``size`` squares at the start, centre and end
    of the longer side (left/centre/right or top/centre/bottom), centred along
    the shorter side."""
    if w >= h:
        y = (h - size) // 2
        step = (w - size) // 2
        return [(x, y, x + size, y + size) for x in (0, step, 2 * step)]
    x = (w - size) // 2
    step = (h - size) // 2
    return [(x, y, x + size, y + size) for y in (0, step, 2 * step)]


def _jpeg_decoder() -> "av.CodecContext":
    ctx = av.CodecContext.create("mjpeg", "r")
    ctx.thread_count = 1  # one clip, one core: the pipeline's threads give the parallelism
    ctx.options = {"flags": "bitexact"}
    return ctx


def _crop_resize_graph(frame: "av.VideoFrame", box: IntBox, size: int, flip: bool) -> "av.filter.Graph":
    """crop -> bilinear resize (converting to RGB) -> optional hflip, in FFmpeg."""
    x0, y0, x1, y1 = box
    graph = av.filter.Graph()
    graph.threads = 1
    nodes = [
        graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                         time_base=fractions.Fraction(1, 25)),
        graph.add("crop", f"w={x1 - x0}:h={y1 - y0}:x={x0}:y={y0}:exact=1"),
        graph.add("scale", f"w={size}:h={size}:flags={_SCALE_FLAGS}"),
        graph.add("format", "rgb24"),
    ]
    if flip:  # after the conversion to RGB, so the result is the exact mirror
        nodes.append(graph.add("hflip"))
    nodes.append(graph.add("buffersink"))
    for a, b in zip(nodes, nodes[1:]):
        a.link_to(b)
    graph.configure()
    return graph


def _whole_pixels(box: Box, w: int, h: int) -> IntBox:
    """``box`` in whole stored pixels, inside the frame, its left and top edges
    on even pixels: JPEG chroma has half the resolution, and ``crop`` can only
    cut it on that grid (an odd edge would shift the colours by a pixel).
    The box keeps its size and moves by at most one pixel."""
    bw = min(max(int(round(box[2] - box[0])), 1), w)
    bh = min(max(int(round(box[3] - box[1])), 1), h)
    x0 = min(2 * int(round(box[0] / 2)), (w - bw) // 2 * 2)
    y0 = min(2 * int(round(box[1] / 2)), (h - bh) // 2 * 2)
    x0, y0 = max(x0, 0), max(y0, 0)
    return x0, y0, x0 + bw, y0 + bh


def _frame_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG headers (only the SOF marker is read)."""
    with Image.open(io.BytesIO(jpeg), formats=("JPEG",)) as img:
        return img.size


def _render_frames(
    frames: Sequence[bytes], indices: np.ndarray, boxes: Sequence[Box], size: int, flip: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes each distinct ``frames[i]`` once and renders every box of it.

    FFmpeg does all the pixel work on one core: its JPEG decoder keeps the
    chroma at half resolution, and one swscale pass crops, resizes
    (bilinear) and converts to RGB, about 1.4x faster than libjpeg + Pillow.
    ``boxes`` are ``(left, top, right, bottom)`` in stored-frame pixels,
    moved here to whole, even pixels (``_whole_pixels``); ``flip`` mirrors
    every output horizontally.

    Returns ``(unique_indices, uint8 [num_boxes, len(unique_indices), size, size, 3])``.
    """
    unique = np.unique(indices)
    out = np.empty((len(boxes), len(unique), size, size, 3), np.uint8)
    decoder = _jpeg_decoder()
    graphs = None
    for n, i in enumerate(unique):
        decoded = decoder.decode(av.Packet(frames[int(i)]))
        if len(decoded) != 1:
            raise ValueError(f"frame {int(i)}: the JPEG decoder returned {len(decoded)} images.")
        frame = decoded[0]
        if graphs is None:
            w, h = frame.width, frame.height
            graphs = [_crop_resize_graph(frame, _whole_pixels(b, w, h), size, flip) for b in boxes]
        elif (frame.width, frame.height) != (w, h):
            raise ValueError(f"frame {int(i)} is {frame.width}x{frame.height}, but frame "
                             f"{int(unique[0])} of the same video is {w}x{h}.")
        frame.pts = n  # the graphs' buffer sources want increasing timestamps
        for k, graph in enumerate(graphs):
            graph.push(frame)
            out[k, n] = graph.pull().to_ndarray()
    return unique, out


def train_clip(
    frames: Sequence[bytes], num_frames: int, rng: np.random.Generator, *,
    clip_len: int, frame_interval: int, crop_size: int, short_side: int | None = None,
    random_resized_crop: bool = True, area_range=(0.08, 1.0), aspect_range=(3 / 4, 4 / 3),
    flip: bool = False, sampling: str = "dense", short_side_range: Sequence[int] | None = None,
    multi_scale_crop: bool = False, auto_augment: str = "", random_erasing_prob: float = 0.0,
    random_erasing_area=(0.02, 1 / 3), random_erasing_aspect=(0.3, 1 / 0.3),
    return_meta: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """One random training clip ``uint8 [clip_len, crop_size, crop_size, 3]``.

    Samples the frame indices (``sample_train_indices``, one clip; with
    ``sampling='segment'`` one random frame in each of ``clip_len`` equal segments,
    ``sample_segment_train_indices``, and ``frame_interval`` is unused), decodes
    only those JPEGs, then: optional short-side resize to ``short_side`` (or to a
    short side drawn in ``short_side_range``, ``augment.jitter_short_side``) ->
    RandomResizedCrop, or the TSN multi-scale crop when ``multi_scale_crop``
    (``augment.multi_scale_crop_box``), or else a random ``crop_size`` crop ->
    resize to ``crop_size`` -> horizontal flip with probability 0.5 when ``flip``
    -> AutoAugment policy or RandAugment spec ``auto_augment`` ('' off) -> random
    erasing with probability ``random_erasing_prob``. The same box, flip, ops and erased box
    apply to every frame of the clip; the defaults add no draw to ``rng``.

    ``return_meta``: also returns where the clip comes from (offline Token
    Labelling), ``{'frame_indices': int32 [clip_len], 'box': float32 [4]`` (the
    rendered crop, left, top, right, bottom in stored-frame pixels)``, 'flip':
    bool}``; the same draws, the same clip.
    """
    if sampling == "segment":
        idx = sample_segment_train_indices(num_frames, clip_len, rng)
    elif sampling == "dense":
        idx = sample_train_indices(num_frames, clip_len, frame_interval, 1, rng)[0]
    else:
        raise ValueError(f"sampling must be 'dense' or 'segment', got {sampling!r}.")
    w, h = _frame_size(frames[int(idx[0])])
    if short_side_range:
        short_side = augment.jitter_short_side(short_side_range, rng)
    scale, sh, sw = _scaled_hw(h, w, short_side)
    if random_resized_crop:
        x0, y0, x1, y1 = random_resized_crop_box(sh, sw, area_range, aspect_range, rng)
    elif multi_scale_crop:
        x0, y0, x1, y1 = augment.multi_scale_crop_box(sh, sw, crop_size, rng)
    else:
        if crop_size > min(sh, sw):
            raise ValueError(f"crop_size {crop_size} is larger than the resized frame {sh}x{sw}; "
                             "raise short_side or use random_resized_crop=True.")
        y0 = int(rng.integers(0, sh - crop_size + 1))
        x0 = int(rng.integers(0, sw - crop_size + 1))
        x1, y1 = x0 + crop_size, y0 + crop_size
    box = (x0 / scale, y0 / scale, x1 / scale, y1 / scale)
    do_flip = bool(flip) and rng.random() < 0.5
    unique, rendered = _render_frames(frames, idx, [box], crop_size, do_flip)  # [1, n, s, s, 3]
    if len(unique) == len(idx) and np.array_equal(unique, idx):
        clip = rendered[0]  # no repeated index: the frames are already in clip order
    else:
        clip = rendered[0, np.searchsorted(unique, idx)]  # [t, s, s, 3]
    if auto_augment:
        clip = augment.augment_policy(clip, rng, auto_augment)
    if random_erasing_prob:
        clip = augment.random_erasing(clip, rng, random_erasing_prob,
                                      area_range=random_erasing_area,
                                      aspect_range=random_erasing_aspect)
    if return_meta:
        return clip, {"frame_indices": np.asarray(idx, np.int32),
                      "box": np.asarray(_whole_pixels(box, w, h), np.float32),
                      "flip": np.bool_(do_flip)}
    return clip


def eval_views(
    frames: Sequence[bytes], num_frames: int, *, clip_len: int, frame_interval: int,
    num_clips: int, num_crops: int, crop_size: int, short_side: int | None,
    sampling: str = "dense",
) -> np.ndarray:
    """The test views of one video: ``uint8 [num_clips * num_crops, clip_len, crop, crop, 3]``.

    ``num_clips`` uniformly spaced clips (``sample_test_indices``; with
    ``sampling='segment'`` the segment middles, then starts, of
    ``sample_segment_test_indices``) x 1 centre crop or 3 crops
    (``three_crop_boxes``) after a short-side resize to ``short_side``; views
    are ordered clip-major (clip 0 crop 0, clip 0 crop 1, ...).
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}.")
    if sampling == "segment":
        idx = sample_segment_test_indices(num_frames, clip_len, num_clips)
    elif sampling == "dense":
        idx = sample_test_indices(num_frames, clip_len, frame_interval, num_clips)
    else:
        raise ValueError(f"sampling must be 'dense' or 'segment', got {sampling!r}.")
    w, h = _frame_size(frames[int(idx[0, 0])])
    scale, sh, sw = _scaled_hw(h, w, short_side)
    if crop_size > min(sh, sw):
        raise ValueError(f"crop_size {crop_size} is larger than the resized frame {sh}x{sw}; "
                         "raise short_side.")
    boxes = [center_crop_box(sh, sw, crop_size)] if num_crops == 1 else three_crop_boxes(sh, sw, crop_size)
    boxes = [tuple(c / scale for c in b) for b in boxes]
    unique, rendered = _render_frames(frames, idx, boxes, crop_size)  # [crops, n, s, s, 3]
    pos = np.searchsorted(unique, idx)  # [clips, t]
    # views clip-major: [clips, crops, t, ...] -> [clips * crops, t, ...]
    return rendered[:, pos].transpose(1, 0, 2, 3, 4, 5).reshape(
        num_clips * num_crops, clip_len, crop_size, crop_size, 3)
