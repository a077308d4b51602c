"""Builders for public action-recognition datasets laid out in their real format.

Registered names end in ``_video`` so they never clash with TFDS's own
datasets (TFDS ships e.g. ``ucf101``): ``kinetics400_video``,
``kinetics600_video``, ``something_something_v2_video``, ``ucf101_video``,
``hmdb51_video`` and ``diving48_video``.

Video files are found by name anywhere under ``manual_dir`` (any sub-folder
layout works), so the archives can be extracted as they come.
"""

from __future__ import annotations

import csv
import json
import os

from dualformer_jax.data.builders.base import (
    VideoBuilder,
    VideoConfig,
    VideoItem,
    index_video_files,
)


def _first_existing(manual_dir: str, candidates: list[str]) -> str | None:
    for c in candidates:
        p = os.path.join(manual_dir, c)
        if os.path.isfile(p):
            return p
    return None


def _lookup(index: dict[str, list[str]], stem: str, prefer_parent: str | None = None) -> str | None:
    paths = index.get(stem.lower())
    if not paths:
        return None
    if prefer_parent:
        for p in paths:
            if os.path.basename(os.path.dirname(p)).lower() == prefer_parent.lower():
                return p
    return paths[0]


# ---------------------------------------------------------------- Kinetics
class _Kinetics(VideoBuilder, skip_registration=True):
    NUM_CLASSES = 0
    HOMEPAGE = "https://github.com/cvdfoundation/kinetics-dataset"
    _SPLIT_FILES = {
        "train": ["train.csv"],
        "validation": ["validate.csv", "val.csv", "validation.csv"],
        "test": ["test.csv"],
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
manual_dir/
  annotations/train.csv, validate.csv (or val.csv), test.csv
      the public CSVs with columns label,youtube_id,time_start,time_end,split
      (they may also sit directly in manual_dir)
  <any sub-folders>/<youtube_id>_<time_start:06d>_<time_end:06d>.<mp4|webm|mkv|...>
      e.g. train/abseiling/-3B32lodo2M_000059_000069.mp4 or train/-3B32lodo2M_000059_000069.mp4
Classes are the labels of train.csv sorted by name. A CSV without labels
(e.g. an unlabelled test set) is not built; this is reported in the summary."""

    def _list_videos(self, manual_dir: str):
        rows_by_split = {}
        for split, names in self._SPLIT_FILES.items():
            path = _first_existing(manual_dir, [os.path.join("annotations", n) for n in names] + names)
            if path is None:
                continue
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                missing = {"youtube_id", "time_start", "time_end"} - set(reader.fieldnames or [])
                if missing:
                    self._fail(f"{path} lacks column(s) {sorted(missing)}.")
                rows = list(reader)
            if not rows or not any((r.get("label") or "").strip() for r in rows):
                self._not_built[split] = f"{os.path.basename(path)} has no labels"
                continue
            rows_by_split[split] = (path, rows)
        if "train" not in rows_by_split:
            self._fail(f"no labelled annotations/train.csv found in {manual_dir}.", FileNotFoundError)
        class_names = sorted({r["label"].strip() for r in rows_by_split["train"][1]})
        if self.NUM_CLASSES and len(class_names) != self.NUM_CLASSES:
            print(f"{self.name}: warning: train.csv has {len(class_names)} classes, "
                  f"the full dataset has {self.NUM_CLASSES}.")
        label_of = {c: i for i, c in enumerate(class_names)}
        index = index_video_files(manual_dir)
        splits = {}
        for split, (path, rows) in rows_by_split.items():
            items, seen = [], set()
            for r in rows:
                label = (r.get("label") or "").strip()
                if label not in label_of:
                    self._fail(f"{os.path.basename(path)}: unknown class name {label!r} "
                               f"(youtube_id {r['youtube_id']}); it is not a label of train.csv.")
                stem = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
                if stem in seen:
                    items.append(VideoItem(stem, None, label_of[label], stem, "duplicate annotation row"))
                    continue
                seen.add(stem)
                video = _lookup(index, stem)
                name = os.path.relpath(video, manual_dir).replace(os.sep, "/") if video else stem
                items.append(VideoItem(stem, video, label_of[label], name,
                                       None if video else "file not found"))
            splits[split] = items
        return class_names, splits


class Kinetics400Video(_Kinetics):
    """Kinetics-400 from the public annotation CSVs and the downloaded clips."""

    name = "kinetics400_video"
    NUM_CLASSES = 400
    DESCRIPTION = "Kinetics-400 (CVDF release) decoded to JPEG frames."


class Kinetics600Video(_Kinetics):
    """Kinetics-600 from the public annotation CSVs and the downloaded clips."""

    name = "kinetics600_video"
    NUM_CLASSES = 600
    DESCRIPTION = "Kinetics-600 (CVDF release) decoded to JPEG frames."


# ------------------------------------------------------ Something-Something v2
class SomethingSomethingV2Video(VideoBuilder):
    """Something-Something v2 from its JSON label files and ``<id>.webm`` videos."""

    name = "something_something_v2_video"
    DESCRIPTION = "Something-Something v2 decoded to JPEG frames."
    HOMEPAGE = "https://developer.qualcomm.com/software/ai-datasets/something-something"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
manual_dir/
  labels/labels.json        {"Approaching something with your camera": "0", ...}
  labels/train.json         [{"id": "78687", "template": "Holding [something] next to [something]", ...}, ...]
  labels/validation.json    (the label files may also sit directly in manual_dir)
  20bn-something-something-v2/<id>.webm   (any sub-folder; found by name)
Classes are the 174 templates ordered by their index in labels.json. The test
split has no public labels and is not built."""

    def _list_videos(self, manual_dir: str):
        labels_path = _first_existing(manual_dir, ["labels/labels.json", "labels.json"])
        if labels_path is None:
            self._fail(f"labels.json not found in {manual_dir} or {manual_dir}/labels.", FileNotFoundError)
        with open(labels_path) as f:
            template_to_idx = {k: int(v) for k, v in json.load(f).items()}
        class_names = [t for t, _ in sorted(template_to_idx.items(), key=lambda kv: kv[1])]
        if [template_to_idx[c] for c in class_names] != list(range(len(class_names))):
            self._fail(f"{labels_path}: label indices must be 0..{len(class_names) - 1}.")
        index = index_video_files(manual_dir)
        splits = {}
        for split in ("train", "validation"):
            path = _first_existing(manual_dir, [f"labels/{split}.json", f"{split}.json"])
            if path is None:
                if split == "train":
                    self._fail(f"labels/train.json not found in {manual_dir}.", FileNotFoundError)
                continue
            with open(path) as f:
                entries = json.load(f)
            items = []
            for e in entries:
                template = e["template"].replace("[", "").replace("]", "")
                if template not in template_to_idx:
                    self._fail(f"{os.path.basename(path)}: unknown class (template) {e['template']!r} "
                               f"for video {e['id']}; it is not in labels.json.")
                vid = str(e["id"])
                video = _lookup(index, vid)
                name = os.path.relpath(video, manual_dir).replace(os.sep, "/") if video else f"{vid}.webm"
                items.append(VideoItem(vid, video, template_to_idx[template], name,
                                       None if video else "file not found"))
            splits[split] = items
        return class_names, splits


# ------------------------------------------------------------ UCF-101 / HMDB-51
_THREE_SPLITS = [
    VideoConfig(name=f"split{k}", split_number=k, description=f"Official train/test split {k}.")
    for k in (1, 2, 3)
]


class Ucf101Video(VideoBuilder):
    """UCF-101 with its official split lists (three configs: split1..split3)."""

    name = "ucf101_video"
    BUILDER_CONFIGS = list(_THREE_SPLITS)
    DESCRIPTION = "UCF-101 decoded to JPEG frames, official splits."
    HOMEPAGE = "https://www.crcv.ucf.edu/data/UCF101.php"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
manual_dir/
  ucfTrainTestlist/classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt
  UCF-101/<Class>/v_<Class>_gXX_cYY.avi   (any sub-folder; found by file name)
Class indices come from classInd.txt (1-based there, 0-based in the dataset)."""

    def _list_videos(self, manual_dir: str):
        k = self.builder_config.split_number
        lists = _first_existing(manual_dir, ["ucfTrainTestlist/classInd.txt", "classInd.txt"])
        if lists is None:
            self._fail(f"ucfTrainTestlist/classInd.txt not found in {manual_dir}.", FileNotFoundError)
        list_dir = os.path.dirname(lists)
        ids = {}
        with open(lists) as f:
            for line in f:
                if line.strip():
                    i, cls = line.split()
                    ids[int(i) - 1] = cls
        class_names = [ids[i] for i in range(len(ids))]
        label_of = {c.lower(): i for i, c in enumerate(class_names)}
        index = index_video_files(manual_dir)
        splits = {}
        for split, fname in (("train", f"trainlist0{k}.txt"), ("test", f"testlist0{k}.txt")):
            path = os.path.join(list_dir, fname)
            if not os.path.isfile(path):
                self._fail(f"{fname} not found next to classInd.txt in {list_dir}.", FileNotFoundError)
            items = []
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if not parts:
                        continue
                    rel = parts[0]
                    cls = rel.split("/")[0]
                    if cls.lower() not in label_of:
                        self._fail(f"{fname}: unknown class name {cls!r} in line {line.strip()!r}.")
                    label = label_of[cls.lower()]
                    if len(parts) > 1 and int(parts[1]) - 1 != label:
                        self._fail(f"{fname}: label {parts[1]} of {rel} disagrees with classInd.txt.")
                    stem = os.path.splitext(os.path.basename(rel))[0]
                    video = _lookup(index, stem, prefer_parent=cls)
                    items.append(VideoItem(stem, video, label, rel, None if video else "file not found"))
            splits[split] = items
        return class_names, splits


class Hmdb51Video(VideoBuilder):
    """HMDB-51 with its official split lists (three configs: split1..split3)."""

    name = "hmdb51_video"
    BUILDER_CONFIGS = list(_THREE_SPLITS)
    DESCRIPTION = "HMDB-51 decoded to JPEG frames, official 70/30 splits."
    HOMEPAGE = "https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
manual_dir/
  testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt
      lines "<video>.avi <id>": 1 = train, 2 = test, 0 = unused
  hmdb51_org/<class>/<video>.avi   (any sub-folder; found by file name)
Classes are the 51 class names of the split files sorted by name."""

    def _list_videos(self, manual_dir: str):
        k = self.builder_config.split_number
        suffix = f"_test_split{k}.txt"
        split_files = {}
        for dirpath, _, filenames in os.walk(manual_dir):
            for f in filenames:
                if f.endswith(suffix):
                    split_files[f[: -len(suffix)]] = os.path.join(dirpath, f)
        if not split_files:
            self._fail(f"no testTrainMulti_7030_splits/<class>{suffix} files in {manual_dir}.",
                       FileNotFoundError)
        class_names = sorted(split_files)
        index = index_video_files(manual_dir)
        splits = {"train": [], "test": []}
        for label, cls in enumerate(class_names):
            with open(split_files[cls]) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) < 2:
                        continue
                    fname, tag = parts[0], parts[1]
                    split = {"1": "train", "2": "test"}.get(tag)
                    if split is None:
                        continue
                    stem = os.path.splitext(fname)[0]
                    video = _lookup(index, stem, prefer_parent=cls)
                    splits[split].append(VideoItem(stem, video, label, f"{cls}/{fname}",
                                                   None if video else "file not found"))
        return class_names, splits


# ---------------------------------------------------------------- Diving-48
class Diving48Video(VideoBuilder):
    """Diving-48 (V2 annotations) from its JSON files and ``rgb/<vid_name>.mp4``."""

    name = "diving48_video"
    NUM_CLASSES = 48
    DESCRIPTION = "Diving-48 decoded to JPEG frames."
    HOMEPAGE = "http://www.svcl.ucsd.edu/projects/resound/dataset.html"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
manual_dir/
  Diving48_V2_train.json, Diving48_V2_test.json
      [{"vid_name": "-mmq0PT-u8k_00155", "label": 8, "start_frame": 0, "end_frame": 81}, ...]
      (the V1 files Diving48_train.json / Diving48_test.json are used if V2 is absent)
  Diving48_vocab.json       optional: 48 [takeoff, somersault, twist, flight] lists for class names
  rgb/<vid_name>.mp4        (any sub-folder; found by name)"""

    def _list_videos(self, manual_dir: str):
        vocab_path = _first_existing(manual_dir, ["Diving48_vocab.json"])
        if vocab_path:
            with open(vocab_path) as f:
                vocab = json.load(f)
            class_names = ["_".join(map(str, v)) if isinstance(v, list) else str(v) for v in vocab]
        else:
            class_names = [f"class_{i:02d}" for i in range(self.NUM_CLASSES)]
        index = index_video_files(manual_dir)
        splits = {}
        for split in ("train", "test"):
            path = _first_existing(manual_dir, [f"Diving48_V2_{split}.json", f"Diving48_{split}.json"])
            if path is None:
                self._fail(f"Diving48_V2_{split}.json not found in {manual_dir}.", FileNotFoundError)
            with open(path) as f:
                entries = json.load(f)
            items = []
            for e in entries:
                label = int(e["label"])
                if not 0 <= label < len(class_names):
                    self._fail(f"{os.path.basename(path)}: unknown class {label} for {e['vid_name']} "
                               f"(expected 0..{len(class_names) - 1}).")
                vid = e["vid_name"]
                video = _lookup(index, vid)
                name = os.path.relpath(video, manual_dir).replace(os.sep, "/") if video else f"{vid}.mp4"
                items.append(VideoItem(vid, video, label, name, None if video else "file not found"))
            splits[split] = items
        return class_names, splits
