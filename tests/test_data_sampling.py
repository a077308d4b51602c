"""Clip samplers against mmaction2's SampleFrames formulas (hand-computed cases)."""

import numpy as np
import pytest

from dualformer_jax.data import sample_test_indices, sample_train_indices
from dualformer_jax.data.transforms import center_crop_box, random_resized_crop_box, three_crop_boxes


def test_train_one_clip_matches_formula():
    # span = 8 * 2 = 16, avg = (100 - 16 + 1) // 1 = 85: offset = randint(85).
    got = sample_train_indices(100, 8, 2, 1, np.random.default_rng(7))
    offset = np.random.default_rng(7).integers(0, 85, size=1)[0]
    np.testing.assert_array_equal(got, [offset + 2 * np.arange(8)])
    assert got.shape == (1, 8)


def test_train_segments_matches_formula():
    # avg = (100 - 16 + 1) // 4 = 21: clip i starts in [21 i, 21 i + 21).
    got = sample_train_indices(100, 8, 2, 4, np.random.default_rng(3))
    jitter = np.random.default_rng(3).integers(0, 21, size=4)
    np.testing.assert_array_equal(got[:, 0], np.arange(4) * 21 + jitter)
    np.testing.assert_array_equal(np.diff(got, axis=1), np.full((4, 7), 2))


def test_train_avg_zero_branches():
    # n = 20 > max(num_clips=10, span=16): sorted randint(20 - 16 + 1).
    got = sample_train_indices(20, 8, 2, 10, np.random.default_rng(1))
    expected = np.sort(np.random.default_rng(1).integers(0, 5, size=10))
    np.testing.assert_array_equal(got[:, 0], expected)
    # n = span = 16, 2 clips: avg = 1 // 2 = 0, ratio 0.5 -> offsets round([0, .5]) = [0, 0].
    got = sample_train_indices(16, 8, 2, 2, np.random.default_rng(1))
    np.testing.assert_array_equal(got, [np.arange(0, 16, 2)] * 2)


def test_train_short_video_wraps_around():
    # n = 10 < span 16: offset 0 and indices loop: 0 2 4 6 8 0 2 4.
    got = sample_train_indices(10, 8, 2, 1, np.random.default_rng(0))
    np.testing.assert_array_equal(got, [[0, 2, 4, 6, 8, 0, 2, 4]])
    got = sample_train_indices(5, 8, 1, 1, np.random.default_rng(0))
    np.testing.assert_array_equal(got, [[0, 1, 2, 3, 4, 0, 1, 2]])


def test_train_is_deterministic_per_seed_and_in_range():
    a = [sample_train_indices(300, 16, 4, 1, np.random.default_rng(s)) for s in range(20)]
    b = [sample_train_indices(300, 16, 4, 1, np.random.default_rng(s)) for s in range(20)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    offsets = {int(x[0, 0]) for x in a}
    assert len(offsets) > 10  # random
    assert all(0 <= x.min() and x.max() < 300 for x in a)
    assert max(offsets) <= 300 - 64  # avg = 237: offsets in [0, 237)


def test_test_clips_formula():
    # avg = (100 - 16 + 1) / 4 = 21.25: offsets int(21.25 i + 10.625) = 10, 31, 53, 74.
    got = sample_test_indices(100, 8, 2, 4)
    np.testing.assert_array_equal(got[:, 0], [10, 31, 53, 74])
    np.testing.assert_array_equal(got[1], 31 + 2 * np.arange(8))
    # One clip is centred: int(85 / 2) = 42.
    np.testing.assert_array_equal(sample_test_indices(100, 8, 2, 1)[:, 0], [42])
    # n == span: avg = 1/3 -> all offsets 0.
    np.testing.assert_array_equal(sample_test_indices(16, 8, 2, 3)[:, 0], [0, 0, 0])
    # n < span: offsets 0, wrap-around.
    np.testing.assert_array_equal(sample_test_indices(6, 4, 2, 2), [[0, 2, 4, 0]] * 2)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        sample_test_indices(0, 8, 2, 1)
    with pytest.raises(ValueError):
        sample_train_indices(10, 0, 2, 1, np.random.default_rng(0))


def test_crop_boxes_match_mmaction2():
    # CenterCrop: left = (340 - 224) // 2 = 58, top = (256 - 224) // 2 = 16.
    assert center_crop_box(256, 340, 224) == (58, 16, 282, 240)
    # ThreeCrop of a 224 x 298 frame: step (298 - 224) // 2 = 37.
    assert three_crop_boxes(224, 298, 224) == [(0, 0, 224, 224), (37, 0, 261, 224), (74, 0, 298, 224)]
    # Portrait: along the height.
    assert three_crop_boxes(300, 224, 224) == [(0, 0, 224, 224), (0, 38, 224, 262), (0, 76, 224, 300)]


def test_random_resized_crop_statistics():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(2000):
        x0, y0, x1, y1 = random_resized_crop_box(256, 340, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= x0 < x1 <= 340 and 0 <= y0 < y1 <= 256
        areas.append((x1 - x0) * (y1 - y0) / (256 * 340))
        ratios.append((x1 - x0) / (y1 - y0))
    areas, ratios = np.array(areas), np.array(ratios)
    assert 0.07 < areas.min() < 0.1 and areas.max() <= 1.0
    # Candidates that do not fit are retried, so large areas are rarer than uniform.
    assert 0.4 < np.mean(areas) < 0.54
    assert np.all((ratios > 0.7) & (ratios < 1.4))
