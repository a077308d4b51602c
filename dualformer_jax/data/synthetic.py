"""Synthetic motion dataset: real ``.mp4`` files whose class is the direction of motion.

Every video shows a field of shapes drifting together in a straight line
(wrapping around the frame edges like a torus) over a random dark background
with static distractor shapes and per-frame noise. The class is one of 8
directions, 45 degrees apart; shapes, sizes, colours, start positions, speed,
distractors, background and noise are random per video, so a single frame
carries no information about the class: only motion does. Horizontal flips
change the class, so train with ``flip=False``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import sys

import numpy as np
from tqdm.auto import tqdm

from dualformer_jax.data import video_io

__all__ = [
    "SYNTHETIC_ANGLES",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_DEFAULTS",
    "ensure_synthetic_dataset",
    "generate_synthetic_motion_videos",
    "render_motion_video",
]

#: Direction of motion of each class in degrees (image y axis pointing down).
SYNTHETIC_ANGLES = {
    "right": 0, "down_right": 45, "down": 90, "down_left": 135,
    "left": 180, "up_left": 225, "up": 270, "up_right": 315,
}
#: Class names in label order (sorted by name, as ``video_folder`` orders classes).
SYNTHETIC_CLASSES = tuple(sorted(SYNTHETIC_ANGLES))

#: Default sizes of ``ensure_synthetic_dataset`` (the project's default dataset).
SYNTHETIC_DEFAULTS = dict(
    num_videos_per_class_train=96,
    num_videos_per_class_test=16,
    num_frames=32,
    size=64,
    seed=0,
)

_SHAPES = ("circle", "square", "diamond", "triangle")

#: Bumped whenever ``render_motion_video`` changes what it draws, so that
#: ``ensure_synthetic_dataset`` rebuilds datasets made by an older generator.
GENERATOR_VERSION = 2


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.2 * r
    # triangle pointing up
    return (dy <= 0.8 * r) & (dy >= -r) & (np.abs(dx) <= 0.6 * (dy + r))


def render_motion_video(
    label: int, rng: np.random.Generator, num_frames: int = 32, size: int = 64,
) -> np.ndarray:
    """Renders one video of class ``label`` (an index into ``SYNTHETIC_CLASSES``):
    ``uint8 [num_frames, size, size, 3]``.

    A field of 6-12 bright shapes (random kind, colour and size) drifts with one
    common velocity over a dark background of random colour and gradient, with
    0-2 static bright distractor shapes and per-frame Gaussian noise. Only the
    direction of the drift depends on ``label``; every other random draw comes
    from ``rng`` in the same order for every class, so with the same ``rng``
    state two classes share frame 0 exactly.

    Objects are always brighter than the background: with both contrast
    polarities a small model needs far more steps to learn motion (see
    ``docs/data.md``).
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)

    def torus(d):  # signed distance on a torus of side `size`
        return (d + size / 2) % size - size / 2

    def bright():
        return rng.uniform(150.0, 255.0, size=3).astype(np.float32)

    # Background: a random dark colour with a gentle random gradient.
    base = rng.uniform(0.0, 70.0, size=3).astype(np.float32)
    gx, gy = rng.uniform(-0.3, 0.3, size=2)
    ramp = (gx * (xs - size / 2) + gy * (ys - size / 2))[..., None]
    bg = np.clip(base + ramp * rng.uniform(-1.0, 1.0, size=3).astype(np.float32), 0.0, 100.0)
    # Static distractors (the same family of shapes as the moving ones).
    for _ in range(int(rng.integers(0, 3))):
        shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
        cx, cy = rng.uniform(0, size, size=2)
        r = rng.uniform(0.05, 0.09) * size
        bg[_shape_mask(shape, torus(xs - cx), torus(ys - cy), r)] = bright()
    # The moving field.
    movers = []
    for _ in range(int(rng.integers(6, 13))):
        shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
        x0, y0 = rng.uniform(0, size, size=2)
        movers.append((shape, bright(), rng.uniform(0.05, 0.09) * size, x0, y0))
    angle = math.radians(SYNTHETIC_ANGLES[SYNTHETIC_CLASSES[label]] + rng.uniform(-5.0, 5.0))
    speed = rng.uniform(0.02, 0.03) * size  # pixels per frame (1.3-1.9 px at 64 px)
    vx, vy = speed * math.cos(angle), speed * math.sin(angle)
    sigma = rng.uniform(2.0, 6.0)
    video = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        frame = bg.copy()
        for shape, colour, r, x0, y0 in movers:
            frame[_shape_mask(shape, torus(xs - (x0 + vx * t)), torus(ys - (y0 + vy * t)), r)] = colour
        frame += rng.normal(0.0, sigma, size=frame.shape).astype(np.float32)
        video[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return video


def _write_one(task) -> str:
    path, label, seed, num_frames, size, fps = task
    rng = np.random.default_rng(seed)
    video_io.write_video(path, render_motion_video(label, rng, num_frames, size), fps=fps)
    return path


def generate_synthetic_motion_videos(
    out_dir: str | os.PathLike,
    num_videos_per_class_train: int = SYNTHETIC_DEFAULTS["num_videos_per_class_train"],
    num_videos_per_class_test: int = SYNTHETIC_DEFAULTS["num_videos_per_class_test"],
    num_frames: int = SYNTHETIC_DEFAULTS["num_frames"],
    size: int = SYNTHETIC_DEFAULTS["size"],
    seed: int = SYNTHETIC_DEFAULTS["seed"],
    fps: float = 25.0,
    num_workers: int | None = None,
) -> dict[str, int]:
    """Writes ``out_dir/{train,test}/<class>/<class>_NNNN.mp4`` (H.264 via PyAV).

    Deterministic given ``seed`` (each video has its own seed derived from
    ``(seed, split, class, index)``). ``size`` must be even.

    Returns:
      ``{'train': n_train, 'test': n_test}``, the number of files written.
    """
    if size % 2:
        raise ValueError(f"size must be even (H.264 yuv420p), got {size}.")
    out_dir = os.fspath(out_dir)
    tasks = []
    counts = {}
    for s, (split, per_class) in enumerate((("train", num_videos_per_class_train),
                                            ("test", num_videos_per_class_test))):
        counts[split] = per_class * len(SYNTHETIC_CLASSES)
        for label, cls in enumerate(SYNTHETIC_CLASSES):
            os.makedirs(os.path.join(out_dir, split, cls), exist_ok=True)
            for i in range(per_class):
                video_seed = np.random.SeedSequence([seed, s, label, i]).generate_state(1)[0]
                path = os.path.join(out_dir, split, cls, f"{cls}_{i:04d}.mp4")
                tasks.append((path, label, int(video_seed), num_frames, size, fps))
    if num_workers is None:
        from dualformer_jax.data.builders.base import default_num_workers  # pylint: disable=import-outside-toplevel
        num_workers = default_num_workers()
    bar = dict(total=len(tasks), desc="Writing synthetic videos", unit="video", file=sys.stderr)
    if num_workers > 1 and len(tasks) >= 32:
        with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
            for _ in tqdm(pool.imap_unordered(_write_one, tasks, chunksize=8), **bar):
                pass
    else:
        for t in tqdm(tasks, **bar):
            _write_one(t)
    return counts


def _config_name(params: dict) -> str:
    if params == SYNTHETIC_DEFAULTS:
        return "synthetic_motion"
    p = params
    return (f"synthetic_motion_{p['num_videos_per_class_train']}x{p['num_videos_per_class_test']}"
            f"_{p['num_frames']}f_{p['size']}px_seed{p['seed']}")


def ensure_synthetic_dataset(
    data_dir: str | os.PathLike,
    *,
    num_videos_per_class_train: int = SYNTHETIC_DEFAULTS["num_videos_per_class_train"],
    num_videos_per_class_test: int = SYNTHETIC_DEFAULTS["num_videos_per_class_test"],
    num_frames: int = SYNTHETIC_DEFAULTS["num_frames"],
    size: int = SYNTHETIC_DEFAULTS["size"],
    seed: int = SYNTHETIC_DEFAULTS["seed"],
    num_workers: int | None = None,
) -> str:
    """Generates and builds the synthetic motion dataset once; returns its TFDS name.

    Videos go to ``data_dir/manual/<config>/`` and the dataset to
    ``data_dir/video_folder/<config>/1.0.0/`` where ``<config>`` is
    ``synthetic_motion`` for the default sizes (a size-specific name
    otherwise). Later calls with the same arguments return at once.

    Returns:
      The name for ``tfds.data_source(name, data_dir=data_dir)`` and the
      pipelines, e.g. ``'video_folder/synthetic_motion'``.
    """
    from dualformer_jax.data.builders import VideoConfig, VideoFolder, build_dataset  # pylint: disable=import-outside-toplevel

    params = dict(num_videos_per_class_train=num_videos_per_class_train,
                  num_videos_per_class_test=num_videos_per_class_test,
                  num_frames=num_frames, size=size, seed=seed)
    config = _config_name(params)
    name = f"{VideoFolder.name}/{config}"
    data_dir = os.fspath(data_dir)
    stamp = dict(params, generator_version=GENERATOR_VERSION)
    built_dir = os.path.join(data_dir, VideoFolder.name, config, str(VideoFolder.VERSION))
    built_marker = os.path.join(built_dir, "synthetic_motion.json")
    if _read_json(built_marker) == stamp:
        return name
    if os.path.exists(built_dir):
        print(f"Rebuilding {name} in {built_dir}: it was made by another version of the "
              "synthetic generator (or its build did not finish).", file=sys.stderr)
        shutil.rmtree(built_dir)
    manual = os.path.join(data_dir, "manual", config)
    marker = os.path.join(manual, ".complete.json")
    if _read_json(marker) != stamp:
        if os.path.isdir(manual):
            shutil.rmtree(manual)
        generate_synthetic_motion_videos(manual, num_workers=num_workers, **params)
        with open(marker, "w") as f:
            json.dump(stamp, f)
    build_dataset(VideoFolder, manual_dir=manual, data_dir=data_dir,
                  config=VideoConfig(name=config, short_side=size,
                                     description="Synthetic motion dataset (8 directions)."),
                  num_workers=num_workers)
    with open(built_marker, "w") as f:
        json.dump(stamp, f)
    return name


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> None:
    import argparse  # pylint: disable=import-outside-toplevel

    p = argparse.ArgumentParser(
        prog="python -m dualformer_jax.data.synthetic",
        description="Generate the synthetic motion videos and build them with the video_folder "
                    "TFDS builder (or, with --videos_only, just write the .mp4 files).")
    p.add_argument("--data_dir", required=True, help="TFDS data dir (videos go to DATA_DIR/manual/<config>)")
    p.add_argument("--videos_only", action="store_true",
                   help="only write DATA_DIR/{train,test}/<class>/*.mp4, no TFDS build")
    for k, v in SYNTHETIC_DEFAULTS.items():
        p.add_argument(f"--{k}", type=int, default=v, help=f"default: {v}")
    p.add_argument("--num_workers", type=int, default=None, help="processes (default: available cores)")
    a = p.parse_args(argv)
    sizes = {k: getattr(a, k) for k in SYNTHETIC_DEFAULTS}
    if a.videos_only:
        print(generate_synthetic_motion_videos(a.data_dir, num_workers=a.num_workers, **sizes))
    else:
        print(ensure_synthetic_dataset(a.data_dir, num_workers=a.num_workers, **sizes))


if __name__ == "__main__":
    main()
