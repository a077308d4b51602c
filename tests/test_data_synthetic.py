"""The synthetic motion dataset: real mp4 files whose class is the direction of motion."""

import json
import math
import os
import time

import numpy as np

from dualformer_jax.data import (
    SYNTHETIC_CLASSES, SYNTHETIC_ANGLES, create_train_dataset, dataset_info, ensure_synthetic_dataset,
    generate_synthetic_motion_videos, read_video,
)
from dualformer_jax.data.synthetic import GENERATOR_VERSION, render_motion_video


def estimate_direction(video, lag=8):
    """Direction (degrees, image y down) and speed (px/frame) of what moves, from pixels
    only: the peak of the circular cross-correlation between frames ``lag`` apart, after
    removing the static part (the per-pixel temporal median)."""
    v = video.astype(np.float32).sum(-1)
    moving = v - np.median(v, axis=0)
    spectra = np.fft.fft2(moving)
    corr = np.fft.ifft2((spectra[lag:] * np.conj(spectra[:-lag])).sum(0)).real
    h, w = corr.shape
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    dy, dx = (dy + h // 2) % h - h // 2, (dx + w // 2) % w - w // 2
    return math.degrees(math.atan2(dy, dx)) % 360, math.hypot(dx, dy) / lag


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


def test_dataset_of_an_older_generator_is_rebuilt(tmp_path, capsys):
    sizes = dict(num_videos_per_class_train=1, num_videos_per_class_test=1, num_frames=8, size=32)
    name = ensure_synthetic_dataset(tmp_path, **sizes, num_workers=1)
    info = dataset_info(name, tmp_path)
    marker = os.path.join(info.data_path, "synthetic_motion.json")
    with open(marker) as f:
        stamp = json.load(f)
    assert stamp["generator_version"] == GENERATOR_VERSION
    stamp["generator_version"] -= 1  # as if an older generator had made it
    with open(marker, "w") as f:
        json.dump(stamp, f)
    with open(os.path.join(tmp_path, "manual", name.split("/")[1], ".complete.json"), "w") as f:
        json.dump(stamp, f)
    stale_video = os.path.join(tmp_path, "manual", name.split("/")[1], "train", "left", "stale.mp4")
    open(stale_video, "wb").close()
    capsys.readouterr()
    assert ensure_synthetic_dataset(tmp_path, **sizes, num_workers=1) == name
    assert "another version of the synthetic generator" in capsys.readouterr().err
    with open(marker) as f:
        assert json.load(f)["generator_version"] == GENERATOR_VERSION
    assert not os.path.exists(stale_video)  # the videos were written again
    rebuilt = dataset_info(name, tmp_path)
    assert rebuilt.splits == {"train": 8, "test": 8} and rebuilt.skipped == {"train": 0, "test": 0}
