"""The synthetic motion dataset: real mp4 files whose class is the direction of motion."""

import math
import os
import time

import numpy as np

from dualformer_jax.data import (
    SYNTHETIC_CLASSES, SYNTHETIC_ANGLES, create_train_dataset, dataset_info, ensure_synthetic_dataset,
    generate_synthetic_motion_videos, read_video,
)
from dualformer_jax.data.synthetic import render_motion_video


def estimate_direction(video):
    """Direction (degrees, image y down) of the thing that moves, from pixels only."""
    v = video.astype(np.float32)
    t, h, w, _ = v.shape
    fg = np.abs(v - np.median(v, axis=0)).sum(-1) > 120
    centres = []
    for f in fg:
        ys, xs = np.nonzero(f)
        # Circular means: the object wraps around the frame edges.
        cx = math.atan2(np.sin(2 * np.pi * xs / w).mean(), np.cos(2 * np.pi * xs / w).mean()) * w / (2 * np.pi)
        cy = math.atan2(np.sin(2 * np.pi * ys / h).mean(), np.cos(2 * np.pi * ys / h).mean()) * h / (2 * np.pi)
        centres.append((cx, cy))
    c = np.array(centres)
    d = np.diff(c, axis=0)
    d = (d + np.array([w, h]) / 2) % np.array([w, h]) - np.array([w, h]) / 2
    dx, dy = np.median(d, axis=0)
    return math.degrees(math.atan2(dy, dx)) % 360, math.hypot(dx, dy)


def test_class_is_the_direction_of_motion(tmp_path):
    counts = generate_synthetic_motion_videos(tmp_path, 2, 1, num_frames=16, size=64, seed=1, num_workers=1)
    assert counts == {"train": 16, "test": 8}
    assert SYNTHETIC_CLASSES == tuple(sorted(SYNTHETIC_CLASSES))  # label order of video_folder
    errors, first_frames = [], []
    for label, cls in enumerate(SYNTHETIC_CLASSES):
        files = sorted(os.listdir(tmp_path / "train" / cls))
        assert files == [f"{cls}_0000.mp4", f"{cls}_0001.mp4"]
        for f in files:
            frames, fps, hw = read_video(tmp_path / "train" / cls / f)  # a real, decodable mp4
            assert len(frames) == 16 and hw == (64, 64) and fps == 25.0
            angle, speed = estimate_direction(np.stack(frames))
            errors.append(abs((angle - SYNTHETIC_ANGLES[cls] + 180) % 360 - 180))
            assert 1.0 < speed < 4.0
            first_frames.append(frames[0].astype(np.float32))
    assert np.median(errors) < 8 and np.mean(np.array(errors) < 20) >= 0.9, errors
    # Appearance is random per video: first frames differ a lot between videos.
    diffs = [np.abs(a - b).mean() for a, b in zip(first_frames, first_frames[1:])]
    assert min(diffs) > 10


def test_render_is_deterministic_and_class_independent_in_appearance():
    a = render_motion_video(3, np.random.default_rng(5), num_frames=8, size=32)
    b = render_motion_video(3, np.random.default_rng(5), num_frames=8, size=32)
    np.testing.assert_array_equal(a, b)
    # With the same seed, two classes share the first frame exactly (same shape,
    # colours, position, noise): frame 0 cannot reveal the class; motion does.
    c = render_motion_video(6, np.random.default_rng(5), num_frames=8, size=32)
    np.testing.assert_array_equal(a[0], c[0])
    assert not np.array_equal(a[4], c[4])


def test_ensure_synthetic_dataset_builds_once(tmp_path):
    sizes = dict(num_videos_per_class_train=2, num_videos_per_class_test=1, num_frames=16, size=32)
    name = ensure_synthetic_dataset(tmp_path, **sizes, num_workers=2)
    assert name == "video_folder/synthetic_motion_2x1_16f_32px_seed0"
    info = dataset_info(name, tmp_path)
    assert info.num_classes == 8 and info.class_names == SYNTHETIC_CLASSES
    assert info.splits == {"train": 16, "test": 8} and info.skipped == {"train": 0, "test": 0}
    stamp = os.path.getmtime(os.path.join(info.data_path, "dataset_info.json"))
    start = time.time()
    assert ensure_synthetic_dataset(tmp_path, **sizes) == name
    assert time.time() - start < 1.0
    assert os.path.getmtime(os.path.join(info.data_path, "dataset_info.json")) == stamp
    batch = next(iter(create_train_dataset(
        name=name, data_dir=tmp_path, batch_size=4, clip_len=8, frame_interval=2, crop_size=28,
        seed=0, process_index=0, process_count=1)))
    assert batch["video"].shape == (4, 8, 28, 28, 3) and set(batch["label"]) <= set(range(8))
