"""Reading and writing real video files (PyAV / FFmpeg) and JPEG frames.

This module only imports numpy, PyAV and Pillow so that the build worker
processes start quickly.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from typing import Any, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoDecodeError",
    "decode_jpeg",
    "encode_jpeg",
    "read_video",
    "resized_hw",
    "video_to_example",
    "write_video",
]

#: File extensions treated as videos by the builders (lower case).
VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg",
    ".flv", ".wmv", ".3gp", ".ogv",
)


class VideoDecodeError(Exception):
    """A video file could not be decoded; the message is the skip reason."""


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def resized_hw(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to ``short_side``."""
    if not short_side or min(height, width) == short_side:
        return height, width
    scale = short_side / min(height, width)
    if height <= width:
        return short_side, max(1, int(round(width * scale)))
    return max(1, int(round(height * scale))), short_side


def read_video(
    path: str | os.PathLike,
    short_side: int | None = None,
    jpeg_quality: int | None = None,
) -> tuple[list[Any], float, tuple[int, int]]:
    """Decodes every frame of a video file with PyAV.

    Args:
      path: video file.
      short_side: if set, frames are resized (area/bilinear) so that their
        shorter side is this many pixels.
      jpeg_quality: if set, frames are returned JPEG-encoded (``bytes``) instead
        of ``uint8 [h, w, 3]`` arrays.

    Returns:
      ``(frames, fps, (height, width))``; ``fps`` is 0.0 when unknown.

    Raises:
      VideoDecodeError: zero-byte, unreadable, truncated or corrupt file, no
        video stream, or no decodable frame. The message says which.
    """
    import av  # pylint: disable=import-outside-toplevel

    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise VideoDecodeError(f"cannot read file: {e}") from e
    if size == 0:
        raise VideoDecodeError("zero-byte file")
    frames: list[Any] = []
    hw = (0, 0)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if isinstance(rate, (Fraction, int, float)) and rate else 0.0
            declared = int(stream.frames or 0)
            for frame in container.decode(stream):
                if not frames:
                    hw = resized_hw(frame.height, frame.width, short_side)
                if (frame.height, frame.width) != hw:
                    img = frame.to_image(
                        width=hw[1], height=hw[0],
                        interpolation="AREA" if hw[0] < frame.height else "BILINEAR",
                    )
                else:
                    img = frame.to_image()
                if jpeg_quality:
                    buf = io.BytesIO()
                    img.save(buf, format="JPEG", quality=jpeg_quality)
                    frames.append(buf.getvalue())
                else:
                    frames.append(np.asarray(img))
    except VideoDecodeError:
        raise
    except Exception as e:  # PyAV raises av.error.* (subclasses of OSError/ValueError).
        where = f" after {len(frames)} frames" if frames else ""
        raise VideoDecodeError(f"decode error{where}: {type(e).__name__}: {e}") from e
    if not frames:
        raise VideoDecodeError("zero frames decoded")
    # A file cut short in the middle can decode without an error but yields
    # fewer frames than its container declares: treat it as truncated. (A
    # small tolerance absorbs containers whose frame count is approximate.)
    if declared and len(frames) < 0.9 * declared - 1:
        raise VideoDecodeError(
            f"truncated: decoded {len(frames)} of {declared} frames declared by the container"
        )
    return frames, fps, hw


def video_to_example(task: tuple[str, str, int, str, int | None, int]) -> tuple[str, Any]:
    """Worker entry point used by the TFDS builders.

    Args:
      task: ``(key, path, label, name, short_side, jpeg_quality)``.

    Returns:
      ``(key, example_dict)`` on success or ``(key, reason_str)`` when the
      video must be skipped.
    """
    key, path, label, name, short_side, quality = task
    try:
        frames, fps, (h, w) = read_video(path, short_side=short_side, jpeg_quality=quality)
    except VideoDecodeError as e:
        return key, str(e)
    return key, {
        "video": frames,
        "label": label,
        "fps": np.float32(fps),
        "num_frames": np.int32(len(frames)),
        "height": np.int32(h),
        "width": np.int32(w),
        "filename": name,
    }


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: float = 25.0,
    codec: str = "libx264",
    crf: int = 18,
) -> None:
    """Writes ``uint8 [t, h, w, 3]`` RGB frames to a real video file with PyAV.

    ``codec`` is an FFmpeg encoder name (``libx264`` for H.264 mp4, ``mpeg4``,
    ``libvpx-vp9`` for webm, ``mjpeg`` for avi ...). Height and width must be
    even for the yuv420p encoders.
    """
    import av  # pylint: disable=import-outside-toplevel

    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [t, h, w, 3] uint8, got {frames.shape}.")
    _, h, w, _ = frames.shape
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        elif codec in ("mpeg4", "mjpeg"):
            stream.options = {"qscale": "3"}
            stream.codec_context.qscale = 3
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
