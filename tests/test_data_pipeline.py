"""grain train/eval pipelines over a real TFDS build of coded videos.

Every frame is a flat colour encoding (video id, frame index), which survives
H.264, JPEG and any crop/resize, so each output clip can be traced back to the
video and the frame indices it was sampled from.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualformer_jax.data import (
    IMAGENET_MEAN, IMAGENET_STD, build_dataset, create_eval_dataset, create_train_dataset,
    normalize, sample_test_indices, VideoConfig,
)
from dualformer_jax.data import transforms
from dualformer_jax.data.transforms import train_clip
from dualformer_jax.data.video_io import encode_jpeg, write_video

LENGTHS = [20, 24, 16, 5, 30, 12, 18]  # 5 < one clip of 8 x 2
LABELS = [0, 1, 0, 1, 0, 1, 1]
NAME = "video_folder/coded"


def coded_frames(video_id, num_frames, h=32, w=48):
    f = np.zeros((num_frames, h, w, 3), np.uint8)
    f[..., 0] = 20 * video_id + 20
    f[..., 1] = (8 * np.arange(num_frames) + 4)[:, None, None]
    f[..., 2] = 128
    return f


def decode_clip(clip):
    """[t, h, w, 3] -> (video id, frame indices)."""
    mean = clip.reshape(clip.shape[0], -1, 3).mean(axis=1)
    ids = np.round((mean[:, 0] - 20) / 20).astype(int)
    assert np.all(ids == ids[0]), ids
    return int(ids[0]), np.round((mean[:, 1] - 4) / 8).astype(int)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    for split in ("train", "test"):
        for vid, (n, label) in enumerate(zip(LENGTHS, LABELS)):
            write_video(root / "manual" / split / f"c{label}" / f"v{vid}.mp4", coded_frames(vid, n), fps=25)
    build_dataset("video_folder", manual_dir=root / "manual", data_dir=root / "data",
                  config=VideoConfig(name="coded", short_side=None), num_workers=1)
    return root / "data"


def train_ds(data_dir, **kw):
    args = dict(name=NAME, data_dir=data_dir, batch_size=2, clip_len=8, frame_interval=2,
                crop_size=16, seed=0, process_index=0, process_count=1, num_threads=2)
    args.update(kw)
    return create_train_dataset(**args)


def take(ds, k):
    it = iter(ds)
    return [next(it) for _ in range(k)]


def test_train_batches_follow_clip_sampling(data_dir):
    batches = take(train_ds(data_dir), 14)  # 28 clips = 4 epochs of 7 videos
    clips = [(b["video"][i], b["label"][i]) for b in batches for i in range(2)]
    assert batches[0]["video"].shape == (2, 8, 16, 16, 3) and batches[0]["video"].dtype == np.uint8
    assert batches[0]["label"].dtype == np.int32
    seen = []
    for clip, label in clips:
        vid, idx = decode_clip(clip)
        n = LENGTHS[vid]
        assert label == LABELS[vid]
        # One random clip: offset in [0, n - 16 + 1) (0 if shorter), then wrap-around.
        offset = idx[0]
        assert 0 <= offset < max(1, n - 16 + 1)
        np.testing.assert_array_equal(idx, (offset + 2 * np.arange(8)) % n)
        seen.append(vid)
    # Each epoch is a permutation of the 7 videos, reshuffled every epoch.
    for e in range(4):
        assert sorted(seen[7 * e: 7 * e + 7]) == list(range(7))
    assert seen[:7] != seen[7:14]


def test_same_seed_same_batches_other_seed_differs(data_dir):
    a = take(train_ds(data_dir, seed=5), 4)
    b = take(train_ds(data_dir, seed=5), 4)
    c = take(train_ds(data_dir, seed=6), 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["video"], y["video"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert any(not np.array_equal(x["video"], z["video"]) for x, z in zip(a, c))


def test_process_shards_are_disjoint_and_make_the_same_global_batches(data_dir):
    # One process with a batch of 6 sees exactly the union of 3 processes' batches of 2,
    # crops included: the global batches do not depend on the number of processes.
    steps = 4
    whole = take(train_ds(data_dir, batch_size=6, process_index=0, process_count=1), steps)
    parts = [take(train_ds(data_dir, batch_size=2, process_index=p, process_count=3), steps)
             for p in range(3)]
    for step in range(steps):
        joined = np.concatenate([parts[p][step]["video"] for p in range(3)])
        np.testing.assert_array_equal(joined, whole[step]["video"])
    ids = [decode_clip(v)[0] for p in range(3) for v in parts[p][0]["video"]]
    assert len(set(ids)) == len(ids) == 6  # the first global batch: 6 different videos
    # Over the first epoch (7 videos, global batch 6: one full batch + 1 of the next)
    # every video appears once before any repeats.
    first = [decode_clip(v)[0] for b in whole[:2] for v in b["video"]][:7]
    assert sorted(first) == list(range(7))


def test_flip_and_crop_are_shared_by_the_clip():
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:, 16:] = 255  # left half black, right half white
    jpegs = [encode_jpeg(frame, 95)] * 10
    flipped = []
    for s in range(200):
        clip = train_clip(jpegs, 10, np.random.default_rng(s), clip_len=4, frame_interval=1, crop_size=32,
                          random_resized_crop=False, flip=True)
        assert np.array_equal(clip[0], clip[3])  # same box and flip for every frame
        flipped.append(clip[0, :, :4].mean() > 128)
    assert 0.4 < np.mean(flipped) < 0.6
    clip = train_clip(jpegs, 10, np.random.default_rng(0), clip_len=4, frame_interval=1, crop_size=32,
                      random_resized_crop=False, flip=False)
    assert clip[:, :, :4].mean() < 10 and clip[:, :, -4:].mean() > 245


def test_flipped_clip_is_the_exact_mirror_of_the_unflipped_one():
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, size=(6, 40, 56, 3), dtype=np.uint8)
    jpegs = [encode_jpeg(f, 90) for f in frames]
    kwargs = dict(clip_len=4, frame_interval=1, crop_size=24, area_range=(0.3, 1.0))
    mirrored = 0
    for s in range(6):
        plain = train_clip(jpegs, 6, np.random.default_rng(s), flip=False, **kwargs)
        maybe = train_clip(jpegs, 6, np.random.default_rng(s), flip=True, **kwargs)  # same box
        if not np.array_equal(maybe, plain):
            np.testing.assert_array_equal(maybe, plain[:, :, ::-1])
            mirrored += 1
    assert 0 < mirrored < 6


def test_rendered_crops_match_an_independent_pillow_reference():
    """FFmpeg's decode + crop + bilinear resize against Pillow's (libjpeg-turbo,
    crop, antialiased bilinear) on the same JPEGs, and both against the frames
    before JPEG coding: they differ by rounding and chroma filtering only
    (under one level on average), and are equally close to the originals."""
    import io  # pylint: disable=import-outside-toplevel

    from PIL import Image  # pylint: disable=import-outside-toplevel

    def pillow(image, box, size):  # crop, then resize the crop (as mmaction2 does)
        return np.asarray(image.convert("RGB").crop(box).resize((size, size), Image.BILINEAR), np.float64)

    h, w = 72, 96
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(5):  # colour ramps and a moving disc with sharp colour edges
        f = np.stack([2 * xx + 3 * t, 3 * yy, 255 - 2 * xx], -1).astype(np.float64)
        f[(xx - 20 - 8 * t) ** 2 + (yy - 36) ** 2 < 15 ** 2] = (240, 200, 40)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    jpegs = [encode_jpeg(f, 95) for f in frames]
    for box, size in [((10, 4, 70, 64), 32), ((0, 0, 96, 72), 48), ((21, 13, 45, 37), 40)]:
        unique, out = transforms._render_frames(jpegs, np.arange(5), [box], size)
        assert out.shape == (1, 5, size, size, 3)
        for t in range(5):
            ours = out[0, t].astype(np.float64)
            aligned = transforms._whole_pixels(box, w, h)
            ref = pillow(Image.open(io.BytesIO(jpegs[t])), aligned, size)
            original = pillow(Image.fromarray(frames[t]), aligned, size)
            assert np.abs(ours - ref).mean() < 1.5, (box, t)
            ours_err, ref_err = np.abs(ours - original), np.abs(ref - original)
            assert ours_err.mean() < 1.25 * ref_err.mean() + 0.25, (box, t, ours_err.mean(), ref_err.mean())
            assert ours_err.max() < ref_err.max() + 12, (box, t, ours_err.max(), ref_err.max())
            if box[2] + 4 <= w:  # the comparison sees a box 4 px off
                x0, y0, x1, y1 = aligned
                shifted = pillow(Image.open(io.BytesIO(jpegs[t])), (x0 + 4, y0, x1 + 4, y1), size)
                assert np.abs(ours - shifted).mean() > 2 * np.abs(ours - ref).mean()
    # boxes move to even left/top edges (the chroma grid), by at most a pixel, keeping their size
    assert transforms._whole_pixels((21, 13, 45, 37), w, h) == (20, 12, 44, 36)
    assert transforms._whole_pixels((22.6, 3.2, 60.1, 41.4), w, h) == (22, 4, 60, 42)
    assert transforms._whole_pixels((1, 1, 96, 72), w, h) == (0, 0, 95, 71)
    assert transforms._whole_pixels((0, 0, 96, 72), w, h) == (0, 0, 96, 72)
    # a wrapped-around clip's frames are decoded once each
    unique, out = transforms._render_frames(jpegs, np.array([3, 4, 0, 1]), [(0, 0, 96, 72)], 24)
    assert list(unique) == [0, 1, 3, 4] and out.shape == (1, 4, 24, 24, 3)


def test_eval_three_crops_each_match_their_pillow_reference():
    """Each decoded frame is pushed through one FFmpeg graph per crop."""
    import io  # pylint: disable=import-outside-toplevel

    from PIL import Image  # pylint: disable=import-outside-toplevel

    h, w = 64, 112
    yy, xx = np.mgrid[0:h, 0:w]
    frames = [np.clip(np.stack([2 * xx + 4 * t, 3 * yy, 255 - 2 * xx], -1), 0, 255).astype(np.uint8)
              for t in range(12)]
    jpegs = [encode_jpeg(f, 95) for f in frames]
    views = transforms.eval_views(jpegs, 12, clip_len=4, frame_interval=2, num_clips=2, num_crops=3,
                                  crop_size=48, short_side=None)
    assert views.shape == (6, 4, 48, 48, 3)
    idx = sample_test_indices(12, 4, 2, 2)
    boxes = transforms.three_crop_boxes(h, w, 48)  # left, centre, right
    for c in range(2):
        for k, box in enumerate(boxes):
            for t in range(4):
                ref = Image.open(io.BytesIO(jpegs[idx[c, t]])).crop(box).resize((48, 48), Image.BILINEAR)
                err = np.abs(views[c * 3 + k, t] - np.asarray(ref, np.float64))
                assert err.mean() < 1.0, (c, k, t, err.mean())
    assert views[0, 0, ..., 0].mean() < views[1, 0, ..., 0].mean() < views[2, 0, ..., 0].mean()


@pytest.mark.parametrize("num_crops", [1, 3])
def test_eval_pads_and_counts_each_video_once(data_dir, num_crops):
    seen = []
    for p in range(3):
        ds = create_eval_dataset(name=NAME, data_dir=data_dir, split="test", batch_size=2, clip_len=8,
                                 frame_interval=2, num_clips=2, num_crops=num_crops, crop_size=16,
                                 short_side=24, process_index=p, process_count=3, num_threads=2)
        batches = list(ds)
        assert len(batches) == len(ds) == 2  # ceil(ceil(7 / 3) / 2) on every process
        for b in batches:
            assert b["video"].shape == (2, 2 * num_crops, 8, 16, 16, 3)
            assert b["mask"].dtype == bool and b["label"].dtype == np.int32
            for video, label, mask in zip(b["video"], b["label"], b["mask"]):
                if not mask:
                    assert label == 0 and not video.any()
                    continue
                vid, _ = decode_clip(video[0])
                assert label == LABELS[vid]
                expected = sample_test_indices(LENGTHS[vid], 8, 2, 2)
                for v in range(2 * num_crops):
                    v_id, idx = decode_clip(video[v])
                    assert v_id == vid
                    np.testing.assert_array_equal(idx, expected[v // num_crops])
                seen.append(vid)
    assert sorted(seen) == list(range(7))


def test_restored_iterator_continues_exactly(data_dir, tmp_path):
    import grain
    import orbax.checkpoint as ocp

    it = iter(train_ds(data_dir, seed=3))
    for _ in range(3):
        next(it)
    mgr = ocp.CheckpointManager(tmp_path / "ckpt")
    mgr.save(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
    mgr.wait_until_finished()
    expected = [next(it) for _ in range(4)]

    fresh = iter(train_ds(data_dir, seed=3))
    mgr2 = ocp.CheckpointManager(tmp_path / "ckpt")
    assert mgr2.latest_step() == 3
    restored = mgr2.restore(3, args=ocp.args.Composite(
        data_iter=grain.checkpoint.CheckpointRestore(fresh)))["data_iter"]
    for want in expected:
        got = next(restored)
        np.testing.assert_array_equal(got["video"], want["video"])
        np.testing.assert_array_equal(got["label"], want["label"])
    # Also with plain get_state/set_state.
    it2 = iter(train_ds(data_dir, seed=3))
    it2.set_state({"next_index": 3})
    np.testing.assert_array_equal(next(it2)["video"], expected[0]["video"])


def test_worker_processes_give_the_same_batches(data_dir):
    ds = train_ds(data_dir, num_workers=2, num_threads=1, seed=11)
    it = iter(ds)
    got = [next(it) for _ in range(3)]
    it.close()
    want = take(train_ds(data_dir, seed=11), 3)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g["video"], w["video"])


def test_normalize_on_device():
    x = np.array([[0, 128, 255], [123, 116, 103]], np.uint8)
    got = jax.jit(normalize)(x)
    want = (x.astype(np.float64) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    assert IMAGENET_MEAN == (123.675, 116.28, 103.53) and IMAGENET_STD == (58.395, 57.12, 57.375)
