"""Shared machinery of the video TFDS builders.

Every builder decodes its videos at build time with PyAV, resizes the shorter
side (``VideoConfig.short_side``, default 256), JPEG-encodes every frame and
writes one example per video::

    {'video': Sequence(Image(jpeg)), 'label': ClassLabel, 'fps': float32,
     'num_frames': int32, 'height': int32, 'width': int32, 'filename': Text}

Videos that cannot be used (zero-byte, corrupt, truncated, undecodable,
zero-frame, or an annotation row whose file is missing) are skipped and listed
with the reason in ``skipped_videos.json`` next to the dataset files
(``<data_dir>/<name>/<config>/<version>/skipped_videos.json``).
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import json
import multiprocessing
import os
import re
import sys
import time
from typing import Iterable, Iterator, NamedTuple

import numpy as np
from etils import epath
import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from dualformer_jax.data import video_io
from dualformer_jax.errors import UserError


class LayoutError(UserError, ValueError):
    """The --manual_dir layout or annotations do not match what the builder reads."""


class ManualDirError(UserError, FileNotFoundError):
    """--manual_dir is missing, empty, or lacks a file the builder needs."""


__all__ = [
    "SKIP_REPORT_FILENAME",
    "VideoBuilder",
    "VideoConfig",
    "VideoItem",
    "build_dataset",
    "default_num_workers",
    "index_video_files",
]

#: Name of the skip report written next to the dataset's ArrayRecord files.
SKIP_REPORT_FILENAME = "skipped_videos.json"

#: Environment variable overriding the number of decoding processes.
NUM_WORKERS_ENV = "DUALFORMER_BUILD_WORKERS"


@dataclasses.dataclass(eq=False)
class VideoConfig(tfds.core.BuilderConfig):
    """Builder config of the video builders.

    Attributes:
      short_side: frames are resized so that their shorter side has this many
        pixels (``None`` keeps the original size).
      jpeg_quality: JPEG quality of the stored frames.
      split_number: official train/test split (1, 2 or 3) for UCF-101 and
        HMDB-51; unused by the other builders.
    """

    short_side: int | None = 256
    jpeg_quality: int = 90
    split_number: int = 1


class VideoItem(NamedTuple):
    """One video to write: ``path`` is None when the annotated file is missing."""

    key: str
    path: str | None
    label: int
    name: str
    skip_reason: str | None = None


def default_num_workers() -> int:
    env = os.environ.get(NUM_WORKERS_ENV)
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def index_video_files(root: os.PathLike | str) -> dict[str, list[str]]:
    """Maps every video file's lower-cased stem under ``root`` to its paths."""
    index: dict[str, list[str]] = collections.defaultdict(list)
    for dirpath, dirnames, filenames in os.walk(os.fspath(root)):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            stem, ext = os.path.splitext(f)
            if ext.lower() in video_io.VIDEO_EXTENSIONS and not f.startswith("."):
                index[stem.lower()].append(os.path.join(dirpath, f))
    return index


def _features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "video": tfds.features.Sequence(
            tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")
        ),
        "label": tfds.features.ClassLabel(),
        "fps": np.float32,
        "num_frames": np.int32,
        "height": np.int32,
        "width": np.int32,
        "filename": tfds.features.Text(),
    })


class VideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base class: subclasses implement ``_list_videos``."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [VideoConfig(name="default", description="Short side 256.")]
    DESCRIPTION = "Videos decoded with PyAV and stored as JPEG frames."
    HOMEPAGE = ""
    #: Layout expected in manual_dir (shown in errors and in the docs).
    MANUAL_DOWNLOAD_INSTRUCTIONS = ""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # TFDS's default looks the module up through `importlib_resources`, a
        # package that is not installed alongside it; the plain file is enough
        # (it is only used to look for an optional checksums file).
        return epath.Path(inspect.getfile(cls))

    def __init__(self, *, num_workers: int | None = None, **kwargs):
        """Args: num_workers: decoding processes (default: available cores, or
        the ``DUALFORMER_BUILD_WORKERS`` environment variable); the rest goes to
        ``tfds.core.GeneratorBasedBuilder``."""
        self._num_workers = num_workers
        self._skipped: list[dict[str, str]] = []
        self._written: dict[str, int] = {}
        self._not_built: dict[str, str] = {}
        self._pool = None
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ info
    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=_features(),
            supervised_keys=("video", "label"),
            homepage=self.HOMEPAGE or None,
        )

    # --------------------------------------------------------- subclass API
    def _list_videos(self, manual_dir: str) -> tuple[list[str], dict[str, list[VideoItem]]]:
        """Returns ``(class_names, {split: [VideoItem]})``.

        Must raise at once (``FileNotFoundError`` / ``ValueError`` with
        instructions) on a malformed layout or an unknown class name.
        """
        raise NotImplementedError

    def _fail(self, message: str, exc=ValueError):
        exc = ManualDirError if issubclass(exc, FileNotFoundError) else LayoutError
        raise exc(
            f"{self.name}: {message}\n\nExpected layout of --manual_dir:\n"
            f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )

    # ------------------------------------------------------------ building
    def _split_generators(self, dl_manager):
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS: missing or empty manual_dir.
            raise ManualDirError(
                f"{self.name}: {e}\nPass the folder holding the videos with "
                "`--manual_dir DIR` (tfds build) or "
                "`download_config=tfds.download.DownloadConfig(manual_dir=DIR)`."
            ) from None
        class_names, splits = self._list_videos(manual_dir)
        if not class_names:
            self._fail(f"no classes found under {manual_dir}.", FileNotFoundError)
        self.info.features["label"].names = list(class_names)
        for split in splits:
            if not re.fullmatch(r"\w+", split):
                self._fail(f"invalid split name {split!r} (use letters, digits and _).")
        return {
            split: self._generate_examples(split=split, items=items)
            for split, items in splits.items()
        }

    def _get_pool(self, num_tasks: int):
        workers = self._num_workers or default_num_workers()
        if workers <= 1 or num_tasks < 4:
            return None
        if self._pool is None:
            # spawn: safe even when the caller has started threads (JAX).
            ctx = multiprocessing.get_context("spawn")
            self._pool = ctx.Pool(workers)
        return self._pool

    def _generate_examples(self, split: str, items: list[VideoItem]) -> Iterator[tuple[str, dict]]:
        cfg: VideoConfig = self.builder_config
        tasks = []
        written = 0
        for item in items:
            if item.skip_reason or item.path is None:
                self._skipped.append({
                    "split": split, "file": item.name,
                    "reason": item.skip_reason or "file not found",
                })
            else:
                tasks.append((item.key, item.path, int(item.label), item.name,
                              cfg.short_side, cfg.jpeg_quality))
        names = {t[0]: t[3] for t in tasks}
        pool = self._get_pool(len(tasks))
        results: Iterable = (
            pool.imap(video_io.video_to_example, tasks, chunksize=1)
            if pool is not None else map(video_io.video_to_example, tasks)
        )
        for key, result in tqdm(results, total=len(tasks), desc=f"Decoding {split} videos",
                                unit="video", leave=False, file=sys.stderr):
            if isinstance(result, str):
                self._skipped.append({"split": split, "file": names[key], "reason": result})
                continue
            written += 1
            self._written[split] = written
            yield key, result
        self._written.setdefault(split, written)

    def _download_and_prepare(self, dl_manager, download_config, **kwargs):
        self._skipped, self._written, self._not_built = [], {}, {}
        start = time.time()
        try:
            super()._download_and_prepare(dl_manager, download_config, **kwargs)
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool.join()
                self._pool = None
        report = self._write_report()
        self._print_summary(report, time.time() - start)

    def _write_report(self) -> dict:
        splits = sorted(set(self._written) | {s["split"] for s in self._skipped})
        skipped = sorted(self._skipped, key=lambda s: (s["split"], s["file"]))
        report = {
            "dataset": f"{self.name}/{self.builder_config.name}",
            "version": str(self.version),
            "splits": {
                s: {
                    "written": self._written.get(s, 0),
                    "skipped": sum(1 for x in skipped if x["split"] == s),
                }
                for s in splits
            },
            "skipped": skipped,
            "splits_not_built": dict(self._not_built),
        }
        path = os.path.join(os.fspath(self.data_dir), SKIP_REPORT_FILENAME)
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
        return report

    def _print_summary(self, report: dict, seconds: float) -> None:
        # During the build TFDS writes into a temporary sibling folder that it
        # renames to the version folder afterwards: name the final one.
        final_dir = os.path.join(os.path.dirname(os.fspath(self.data_dir).rstrip("/")), str(self.version))
        lines = [f"\nBuilt {report['dataset']} {report['version']} in {seconds:.1f}s -> {final_dir}"]
        for split, c in report["splits"].items():
            lines.append(f"  {split:>12}: {c['written']:7d} videos written, {c['skipped']:5d} skipped")
        total = len(report["skipped"])
        lines.append(
            f"  {total} video(s) skipped; reasons in {os.path.join(final_dir, SKIP_REPORT_FILENAME)}"
        )
        for split, why in report["splits_not_built"].items():
            lines.append(f"  split {split!r} not built: {why}")
        for s in report["skipped"][:10]:
            lines.append(f"    [{s['split']}] {s['file']}: {s['reason']}")
        if total > 10:
            lines.append(f"    ... and {total - 10} more")
        print("\n".join(lines), flush=True)


def build_dataset(
    builder_cls: type[VideoBuilder] | str,
    *,
    manual_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    config: str | VideoConfig | None = None,
    num_workers: int | None = None,
) -> VideoBuilder:
    """Builds (or reuses, if already built) a video dataset from Python.

    Equivalent to ``tfds build --imports dualformer_jax.data.builders NAME
    --manual_dir DIR --data_dir OUT --file_format array_record``.

    Args:
      builder_cls: a builder class or its registered name (e.g. ``'video_folder'``).
      manual_dir: folder holding the raw videos/annotations (see each builder's
        ``MANUAL_DOWNLOAD_INSTRUCTIONS``).
      data_dir: TFDS data directory to write into.
      config: a config name or a ``VideoConfig`` (e.g.
        ``VideoConfig(name='my_videos', short_side=128)``).
      num_workers: decoding processes (default: available cores).

    Returns:
      The prepared builder (``builder.info`` has the split sizes).
    """
    if isinstance(builder_cls, str):
        from dualformer_jax.data import builders as _  # noqa: F401  (registers)
        builder_cls = tfds.core.registered.imported_builder_cls(builder_cls)
    builder = builder_cls(
        config=config, data_dir=os.fspath(data_dir), file_format="array_record",
        num_workers=num_workers,
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
    )
    return builder
