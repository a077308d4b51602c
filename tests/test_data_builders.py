"""TFDS video builders on real video files written during the test."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dualformer_jax.data import build_dataset, dataset_info, VideoConfig, SKIP_REPORT_FILENAME
from dualformer_jax.data.builders import (
    Diving48Video, Hmdb51Video, Kinetics400Video, Kinetics600Video,
    SomethingSomethingV2Video, Ucf101Video, VideoFolder,
)
from dualformer_jax.data.video_io import write_video


def coded_frames(video_id, num_frames, h=32, w=48):
    """Flat frames whose colour encodes (video id, frame index)."""
    f = np.zeros((num_frames, h, w, 3), np.uint8)
    f[..., 0] = 20 * video_id + 20
    f[..., 1] = (10 * np.arange(num_frames) + 5)[:, None, None]
    f[..., 2] = 128
    return f


def write_coded(path, video_id, num_frames, codec="libx264"):
    write_video(path, coded_frames(video_id, num_frames), fps=25, codec=codec)


@pytest.fixture(scope="module")
def folder_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("vf")
    m = root / "manual"
    write_coded(m / "train/apple/v0.mp4", 0, 20)
    write_coded(m / "train/apple/v1.mp4", 1, 24)
    write_coded(m / "train/banana/v2.mp4", 2, 16)
    write_coded(m / "train/banana/short.mp4", 3, 5)  # shorter than one 8-frame clip
    (m / "train/banana/corrupt.mp4").write_bytes(os.urandom(3000))
    (m / "train/apple/zero.mp4").write_bytes(b"")
    write_coded(m / "train/apple/cut.avi", 6, 20, codec="mjpeg")
    data = (m / "train/apple/cut.avi").read_bytes()
    (m / "train/apple/cut.avi").write_bytes(data[: len(data) // 2])  # truncated
    write_coded(m / "train/loose.mp4", 7, 10)  # no class folder: no label
    (m / "train/apple/notes.txt").write_text("not a video")
    write_coded(m / "test/apple/t0.mp4", 4, 18)
    write_coded(m / "test/banana/t1.mp4", 5, 12)
    builder = build_dataset("video_folder", manual_dir=m, data_dir=root / "data",
                            config=VideoConfig(name="coded", short_side=24), num_workers=2)
    return root, builder


def test_video_folder_counts_and_report(folder_build, capsys):
    root, builder = folder_build
    assert builder.info.splits["train"].num_examples == 4
    assert builder.info.splits["test"].num_examples == 2
    assert builder.info.features["label"].names == ["apple", "banana"]
    report_path = root / "data/video_folder/coded/1.0.0" / SKIP_REPORT_FILENAME
    report = json.loads(report_path.read_text())
    assert report["splits"] == {"train": {"written": 4, "skipped": 5}, "test": {"written": 2, "skipped": 0}}
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"train/banana/corrupt.mp4", "train/apple/zero.mp4", "train/apple/cut.avi",
                            "train/loose.mp4", "train/apple/notes.txt"}
    assert reasons["train/apple/zero.mp4"] == "zero-byte file"
    assert reasons["train/banana/corrupt.mp4"].startswith("decode error")
    # Cut in the middle of a frame (decoder error) or between frames (fewer
    # frames than the container declares): skipped either way.
    assert reasons["train/apple/cut.avi"].startswith(("truncated: decoded", "decode error after"))
    assert "no label" in reasons["train/loose.mp4"]
    info = dataset_info("video_folder/coded", root / "data")
    assert info.num_classes == 2 and info.class_names == ("apple", "banana")
    assert info.splits == {"train": 4, "test": 2} and info.skipped == {"train": 5, "test": 0}


def test_video_folder_decoded_frames(folder_build):
    root, _ = folder_build
    ds = tfds.data_source("video_folder/coded", split="train", data_dir=os.fspath(root / "data"))
    examples = {ds[i]["filename"].decode(): ds[i] for i in range(len(ds))}
    expected = {"train/apple/v0.mp4": (0, 20, 0), "train/apple/v1.mp4": (1, 24, 0),
                "train/banana/v2.mp4": (2, 16, 1), "train/banana/short.mp4": (3, 5, 1)}
    assert set(examples) == set(expected)
    for name, (vid, n, label) in expected.items():
        ex = examples[name]
        video = np.asarray(ex["video"])
        assert video.shape == (n, 24, 36, 3)  # 32x48 with the short side resized to 24
        assert ex["num_frames"] == n and ex["label"] == label
        assert (ex["height"], ex["width"]) == (24, 36)
        assert ex["fps"] == pytest.approx(25.0)
        assert np.abs(video.astype(int) - coded_frames(vid, n, 24, 36)).max() <= 6


def test_video_folder_second_config_same_data_dir(folder_build):
    root, _ = folder_build
    build_dataset(VideoFolder, manual_dir=root / "manual", data_dir=root / "data",
                  config=VideoConfig(name="native", short_side=None), num_workers=1)
    ds = tfds.data_source("video_folder/native", split="test", data_dir=os.fspath(root / "data"))
    assert len(ds) == 2 and np.asarray(ds[0]["video"]).shape[1:] == (32, 48, 3)
    assert len(tfds.data_source("video_folder/coded", split="test", data_dir=os.fspath(root / "data"))) == 2


def test_missing_manual_dir_fails_with_instructions(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/<class name>"):
        build_dataset("video_folder", manual_dir=tmp_path / "nope", data_dir=tmp_path / "d", num_workers=1)


def test_unknown_class_fails_at_once(tmp_path):
    write_coded(tmp_path / "m/train/a/x.mp4", 0, 8)
    write_coded(tmp_path / "m/test/zebra/y.mp4", 1, 8)
    with pytest.raises(ValueError, match="zebra"):
        build_dataset("video_folder", manual_dir=tmp_path / "m", data_dir=tmp_path / "d", num_workers=1)
    assert not (tmp_path / "d/video_folder/default/1.0.0").exists()


def _build(cls, manual, tmp_path, config=None):
    b = build_dataset(cls, manual_dir=manual, data_dir=tmp_path / "data",
                      config=config, num_workers=1)
    report = json.loads((tmp_path / "data" / b.name / b.builder_config.name / "1.0.0" /
                         SKIP_REPORT_FILENAME).read_text())
    return b, report


@pytest.mark.parametrize("cls", [Kinetics400Video, Kinetics600Video])
def test_kinetics(cls, tmp_path):
    m = tmp_path / "manual"
    (m / "annotations").mkdir(parents=True)
    rows = {
        "train": [("abseiling", "aaaaaaaaaaa", 10, 20), ("zumba", "bbbbbbbbbbb", 0, 10),
                  ("abseiling", "missing0000", 5, 15)],
        "validate": [("zumba", "ccccccccccc", 30, 40)],
        "test": [("", "ddddddddddd", 0, 10)],  # unlabelled test set: not built, reported
    }
    for split, rs in rows.items():
        with open(m / "annotations" / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for label, yid, s, e in rs:
                w.writerow([label, yid, s, e, split])
    write_coded(m / "train/abseiling/aaaaaaaaaaa_000010_000020.mp4", 0, 8)
    write_coded(m / "train/bbbbbbbbbbb_000000_000010.mp4", 1, 8)  # flat layout works too
    write_coded(m / "val/ccccccccccc_000030_000040.webm", 2, 8, codec="libvpx-vp9")
    b, report = _build(cls, m, tmp_path)
    assert b.name == cls.name
    assert b.info.features["label"].names == ["abseiling", "zumba"]
    assert b.info.splits["train"].num_examples == 2 and b.info.splits["validation"].num_examples == 1
    assert report["skipped"] == [{"split": "train", "file": "missing0000_000005_000015",
                                  "reason": "file not found"}]
    assert report["splits_not_built"] == {"test": "test.csv has no labels"}
    assert "test" not in b.info.splits
    ex = tfds.data_source(f"{cls.name}/default", split="validation",
                          data_dir=os.fspath(tmp_path / "data"))[0]
    assert ex["label"] == 1 and ex["num_frames"] == 8 and ex["filename"].decode().endswith(".webm")


def test_kinetics_unknown_class_fails(tmp_path):
    m = tmp_path / "manual"
    m.mkdir()
    (m / "train.csv").write_text("label,youtube_id,time_start,time_end,split\na,x,0,10,train\n")
    (m / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nb,y,0,10,val\n")
    with pytest.raises(ValueError, match="unknown class name 'b'"):
        _build(Kinetics400Video, m, tmp_path)


def test_something_something_v2(tmp_path):
    m = tmp_path / "manual"
    (m / "labels").mkdir(parents=True)
    (m / "labels/labels.json").write_text(json.dumps(
        {"Pushing something from left to right": "1", "Holding something": "0"}))
    (m / "labels/train.json").write_text(json.dumps([
        {"id": "11", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["a cup"]},
        {"id": "12", "label": "pushing a pen", "template": "Pushing [something] from left to right",
         "placeholders": ["a pen"]},
        {"id": "13", "label": "holding a pen", "template": "Holding [something]", "placeholders": ["a pen"]},
    ]))
    (m / "labels/validation.json").write_text(json.dumps([
        {"id": "21", "label": "pushing x", "template": "Pushing [something] from left to right",
         "placeholders": ["x"]}]))
    for vid in ("11", "12", "21"):
        write_coded(m / f"20bn-something-something-v2/{vid}.webm", int(vid) % 10, 8, codec="libvpx-vp9")
    b, report = _build(SomethingSomethingV2Video, m, tmp_path)
    assert b.info.features["label"].names == ["Holding something", "Pushing something from left to right"]
    assert {s: v.num_examples for s, v in b.info.splits.items()} == {"train": 2, "validation": 1}
    assert [(s["file"], s["reason"]) for s in report["skipped"]] == [("13.webm", "file not found")]
    ds = tfds.data_source("something_something_v2_video", split="train", data_dir=os.fspath(tmp_path / "data"))
    assert sorted((ex["filename"].decode(), int(ex["label"])) for ex in (ds[0], ds[1])) == [
        ("20bn-something-something-v2/11.webm", 0), ("20bn-something-something-v2/12.webm", 1)]


def test_ucf101_split_configs(tmp_path):
    m = tmp_path / "manual"
    lists = m / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n")
    vids = ["v_ApplyEyeMakeup_g01_c01", "v_ApplyEyeMakeup_g08_c01", "v_HandStandPushups_g01_c01",
            "v_HandStandPushups_g08_c01"]
    for i, v in enumerate(vids):
        cls = "ApplyEyeMakeup" if "Apply" in v else "HandstandPushups"
        write_coded(m / "UCF-101" / cls / f"{v}.avi", i, 8, codec="mjpeg")
    (lists / "trainlist02.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nHandstandPushups/v_HandStandPushups_g08_c01.avi 2\n"
        "HandstandPushups/v_HandStandPushups_g09_c01.avi 2\n")
    (lists / "testlist02.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nHandstandPushups/v_HandStandPushups_g01_c01.avi\n")
    b, report = _build(Ucf101Video, m, tmp_path, config="split2")
    assert b.info.features["label"].names == ["ApplyEyeMakeup", "HandstandPushups"]
    assert b.info.splits["train"].num_examples == 2 and b.info.splits["test"].num_examples == 2
    assert report["skipped"] == [{"split": "train", "file": "HandstandPushups/v_HandStandPushups_g09_c01.avi",
                                  "reason": "file not found"}]
    ds = tfds.data_source("ucf101_video/split2", split="test", data_dir=os.fspath(tmp_path / "data"))
    assert sorted(int(ds[i]["label"]) for i in range(2)) == [0, 1]
    with pytest.raises(FileNotFoundError, match="trainlist01.txt"):
        _build(Ucf101Video, m, tmp_path, config="split1")


def test_hmdb51(tmp_path):
    m = tmp_path / "manual"
    splits = m / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    (splits / "brush_hair_test_split1.txt").write_text("a_brush.avi 1 \nb_brush.avi 2 \nc_brush.avi 0 \n")
    (splits / "wave_test_split1.txt").write_text("a_wave.avi 1 \nb_wave.avi 2 \ngone_wave.avi 1 \n")
    for i, (cls, v) in enumerate([("brush_hair", "a_brush"), ("brush_hair", "b_brush"),
                                  ("brush_hair", "c_brush"), ("wave", "a_wave"), ("wave", "b_wave")]):
        write_coded(m / "hmdb51_org" / cls / f"{v}.avi", i, 8, codec="mjpeg")
    b, report = _build(Hmdb51Video, m, tmp_path, config="split1")
    assert b.info.features["label"].names == ["brush_hair", "wave"]
    assert {s: v.num_examples for s, v in b.info.splits.items()} == {"train": 2, "test": 2}
    assert report["skipped"] == [{"split": "train", "file": "wave/gone_wave.avi", "reason": "file not found"}]


def test_diving48(tmp_path):
    m = tmp_path / "manual"
    m.mkdir()
    vocab = [["Back", f"{i}som", "NoTwis", "PIKE"] for i in range(48)]
    (m / "Diving48_vocab.json").write_text(json.dumps(vocab))
    (m / "Diving48_V2_train.json").write_text(json.dumps([
        {"vid_name": "abc_00001", "label": 3, "start_frame": 0, "end_frame": 8},
        {"vid_name": "abc_00002", "label": 47, "start_frame": 0, "end_frame": 8},
        {"vid_name": "abc_00009", "label": 1, "start_frame": 0, "end_frame": 8}]))
    (m / "Diving48_V2_test.json").write_text(json.dumps([
        {"vid_name": "xyz_00001", "label": 0, "start_frame": 0, "end_frame": 8}]))
    for i, v in enumerate(["abc_00001", "abc_00002", "xyz_00001"]):
        write_coded(m / "rgb" / f"{v}.mp4", i, 8)
    b, report = _build(Diving48Video, m, tmp_path)
    names = b.info.features["label"].names
    assert len(names) == 48 and names[3] == "Back_3som_NoTwis_PIKE"
    assert {s: v.num_examples for s, v in b.info.splits.items()} == {"train": 2, "test": 1}
    assert report["skipped"] == [{"split": "train", "file": "abc_00009.mp4", "reason": "file not found"}]
    ds = tfds.data_source("diving48_video", split="train", data_dir=os.fspath(tmp_path / "data"))
    assert sorted(int(ds[i]["label"]) for i in range(2)) == [3, 47]


def test_registered_names_do_not_clash_with_tfds():
    import dualformer_jax.data.builders  # noqa: F401
    import tensorflow_datasets.video.ucf101  # noqa: F401  (TFDS's own ucf101)
    names = set(tfds.list_builders(with_community_datasets=False))
    ours = {"video_folder", "kinetics400_video", "kinetics600_video", "something_something_v2_video",
            "ucf101_video", "hmdb51_video", "diving48_video"}
    assert ours <= names and "ucf101" in names
