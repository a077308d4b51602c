"""``video_folder``: any ``<split>/<class>/<video>`` folder of video files."""

from __future__ import annotations

import os

from dualformer_jax.data import video_io
from dualformer_jax.data.builders.base import VideoBuilder, VideoConfig, VideoItem


class VideoFolder(VideoBuilder):
    """Videos laid out as ``manual_dir/<split>/<class name>/<video files>``.

    Classes are the sub-folders of the ``train`` split sorted by name (or of
    all splits when there is no ``train`` folder). Several folders can be built
    into one ``data_dir`` by giving each its own config name, e.g.
    ``config=VideoConfig(name='my_videos', short_side=128)`` from Python or
    ``--config '{"name": "my_videos", "short_side": 128}'`` with ``tfds build``;
    read them back as ``'video_folder/my_videos'``.
    """

    name = "video_folder"
    BUILDER_CONFIGS = [
        VideoConfig(name="default", description="Frames resized to short side 256."),
    ]
    DESCRIPTION = "A folder of videos organised as <split>/<class>/<video>."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
manual_dir/
  train/<class name>/<video>.mp4   (any FFmpeg-readable video: mp4, avi, webm, mkv, ...)
  test/<class name>/<video>.mp4    (any other split folder: validation, val, ...)
Classes are the class folders of train/ sorted by name; every other split may
only use those class names."""

    def _list_videos(self, manual_dir: str):
        split_dirs = sorted(
            d for d in os.listdir(manual_dir)
            if os.path.isdir(os.path.join(manual_dir, d)) and not d.startswith(".")
        )
        if not split_dirs:
            self._fail(f"no split folders (train/, test/, ...) in {manual_dir}.", FileNotFoundError)

        def class_dirs(split):
            root = os.path.join(manual_dir, split)
            return sorted(
                d for d in os.listdir(root)
                if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")
            )

        if "train" in split_dirs:
            class_names = class_dirs("train")
        else:
            class_names = sorted({c for s in split_dirs for c in class_dirs(s)})
        label_of = {c: i for i, c in enumerate(class_names)}
        for split in split_dirs:
            unknown = sorted(set(class_dirs(split)) - set(label_of))
            if unknown:
                self._fail(
                    f"split {split!r} has class folder(s) {unknown} that are not classes of "
                    f"the train split {class_names}. Rename or remove them (or add them to train/)."
                )

        splits = {}
        for split in split_dirs:
            items = []
            root = os.path.join(manual_dir, split)
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel_dir = os.path.relpath(dirpath, root)
                for f in sorted(filenames):
                    if f.startswith("."):
                        continue
                    path = os.path.join(dirpath, f)
                    name = os.path.relpath(path, manual_dir).replace(os.sep, "/")
                    if rel_dir == ".":
                        items.append(VideoItem(name, path, -1, name,
                                               "not inside a class folder (no label)"))
                        continue
                    label = label_of[rel_dir.split(os.sep)[0]]
                    if os.path.splitext(f)[1].lower() not in video_io.VIDEO_EXTENSIONS:
                        items.append(VideoItem(name, path, label, name,
                                               "not a video file extension"))
                        continue
                    items.append(VideoItem(name, path, label, name))
            splits[split] = items
        return class_names, splits
