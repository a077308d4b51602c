"""grain input pipelines over the ArrayRecord files written by the builders.

Train (infinite)::

    tfds.data_source -> shard per process -> shuffle(seed) -> repeat ->
    random clip + decode sampled JPEGs + RandomResizedCrop/resize/flip
    (+ optional AutoAugment, random erasing: ``augment.py``) ->
    batch -> threads (+ optional worker processes) with prefetch

Eval (finite, one pass): ``num_clips`` x ``num_crops`` views per video, the
last batch of every process padded (``mask=False``) so that all processes
yield the same number of batches and every video counts exactly once.

Batches hold uint8 video; normalise on device with
``dualformer_jax.data.normalize`` inside the jitted step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Iterator

import grain
import numpy as np
import tensorflow_datasets as tfds

from tensorflow_datasets.proto import tf_example_pb2

from dualformer_jax.data import transforms
from dualformer_jax.errors import ConfigError

__all__ = ["DatasetSummary", "EvalDataset", "create_eval_dataset", "create_train_dataset", "dataset_info"]


def _parse(raw: bytes) -> dict[str, Any]:
    """Parses one stored ``tf.train.Example`` without decoding the frames.

    The protobuf (upb) message is parsed in C and the ``video`` list stays a
    lazy container: only the JPEG frames that a clip samples become Python
    ``bytes``, which is cheaper than TFDS's full numpy deserialization.
    """
    feature = tf_example_pb2.Example.FromString(raw).features.feature
    return {
        "video": feature["video"].bytes_list.value,
        "num_frames": feature["num_frames"].int64_list.value[0],
        "label": feature["label"].int64_list.value[0],
    }


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _process(process_index, process_count) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # pylint: disable=import-outside-toplevel

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count}).")
    return int(process_index), int(process_count)


def _source(name: str, data_dir, split: str):
    try:
        return tfds.data_source(
            name, split=split, data_dir=os.fspath(data_dir) if data_dir else None,
            deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES,
        )
    except Exception as e:  # DatasetNotFoundError, unknown split, ...
        raise type(e)(
            f"{e}\n\nCould not open split {split!r} of {name!r} in data_dir={data_dir!r}. Build it "
            "first, e.g. `python -m dualformer_jax.data.build video_folder --manual_dir DIR "
            f"--data_dir {data_dir}` (see docs/data.md), or call "
            "dualformer_jax.data.ensure_synthetic_dataset(data_dir) for the synthetic dataset."
        ) from e


def _seeds(seed: int, process_index: int) -> tuple[int, int]:
    a, b = np.random.SeedSequence([int(seed), int(process_index)]).generate_state(2)
    return int(a), int(b)


class _ProcessRows(grain.MapDataset):
    """This process's rows of every global batch of ``parent`` (then batched)."""

    def __init__(self, parent: grain.MapDataset, batch_size: int, process_index: int,
                 process_count: int):
        super().__init__(parent)
        self._b, self._p, self._n = int(batch_size), int(process_index), int(process_count)

    def __len__(self) -> int:
        return len(self._parent) // (self._b * self._n)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        start = (index * self._n + self._p) * self._b  # global batch `index`, row block p
        clips = [self._parent[start + i] for i in range(self._b)]
        return {k: np.stack([c[k] for c in clips]) for k in clips[0]}  # video [b, t, h, w, 3]


class _TrainClip(grain.transforms.RandomMap):
    def __init__(self, source=None, **kwargs):
        self._source = source  # with_meta: elements are example indices into it
        self._kwargs = kwargs

    def random_map(self, raw, rng: np.random.Generator):
        if self._source is None:
            example = _parse(raw)
            clip = transforms.train_clip(example["video"], int(example["num_frames"]), rng,
                                         **self._kwargs)
            return {"video": clip, "label": np.int32(example["label"])}
        example = _parse(self._source[int(raw)])
        clip, meta = transforms.train_clip(example["video"], int(example["num_frames"]), rng,
                                           return_meta=True, **self._kwargs)
        return {"video": clip, "label": np.int32(example["label"]), "index": np.int64(raw),
                **meta}


class _EvalViews(grain.transforms.Map):
    """Maps a position of the padded shard to its views (zeros for padding)."""

    def __init__(self, source, process_index, process_count, num_real, view_shape, **kwargs):
        self._source = source
        self._p, self._P = process_index, process_count
        self._num_real = num_real
        self._view_shape = view_shape
        self._kwargs = kwargs

    def map(self, i):
        i = int(i)
        if i >= self._num_real:
            return {"video": np.zeros(self._view_shape, np.uint8), "label": np.int32(0),
                    "mask": np.bool_(False)}
        example = _parse(self._source[self._p + i * self._P])
        views = transforms.eval_views(example["video"], int(example["num_frames"]), **self._kwargs)
        return {"video": views, "label": np.int32(example["label"]), "mask": np.bool_(True)}


def _finish(ds: grain.MapDataset, num_threads, prefetch, num_workers) -> grain.IterDataset:
    threads = num_threads or (1 if num_workers else _default_threads())
    buffer = max(int(prefetch or 0), threads, 1)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=buffer))
    if num_workers and num_workers > 0:
        # grain reads its absl flags when it starts worker processes; outside an
        # absl app (notebooks, pytest, plain scripts) they were never parsed.
        from absl import flags  # pylint: disable=import-outside-toplevel

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=int(num_workers), per_worker_buffer_size=max(1, int(prefetch or 1))))
    return it


def create_train_dataset(
    *,
    name: str,
    data_dir,
    split: str = "train",
    batch_size: int,
    clip_len: int,
    frame_interval: int,
    crop_size: int,
    short_side: int | None = None,
    random_resized_crop: bool = True,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = False,
    sampling: str = "dense",
    short_side_range: tuple[int, int] | None = None,
    multi_scale_crop: bool = False,
    auto_augment: str = "",
    random_erasing_prob: float = 0.0,
    random_erasing_area: tuple[float, float] = (0.02, 1 / 3),
    random_erasing_aspect: tuple[float, float] = (0.3, 1 / 0.3),
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    num_workers: int = 0,
    prefetch: int | None = None,
    num_threads: int | None = None,
    with_meta: bool = False,
) -> grain.IterDataset:
    """Infinite, shuffled training batches of this process.

    All processes walk the same seeded, per-epoch reshuffled stream of clips;
    global batch ``g`` is stream elements ``[g*B, (g+1)*B)`` with
    ``B = batch_size * process_count``, and process ``p`` decodes only its rows
    ``[p*batch_size, (p+1)*batch_size)`` of it (disjoint shards). The global
    batches, crops included, are therefore the same for any number of
    processes. Each process yields
    ``{'video': uint8 [batch_size, clip_len, crop_size, crop_size, 3],
    'label': int32 [batch_size]}``.

    Args:
      name: TFDS name, e.g. ``'video_folder/synthetic_motion'``.
      data_dir: TFDS data directory holding the built dataset.
      split: split to read.
      batch_size: per-process batch size.
      clip_len, frame_interval: clip sampling (one random clip per video,
        ``sample_train_indices``; past-the-end indices wrap around).
      crop_size: output height and width.
      short_side: short-side resize before cropping (default: the stored size).
      random_resized_crop: RandomResizedCrop with ``area_range`` /
        ``aspect_range`` (default) or, if False, a random ``crop_size`` crop.
      flip: random horizontal flip (p=0.5). Keep False for direction-sensitive
        datasets (Something-Something, the synthetic motion dataset).
      sampling: ``'dense'`` (above) or ``'segment'``: one random frame in each of
        ``clip_len`` equal segments (TSN, the LVT SSv2 recipe).
      short_side_range: ``(lo, hi)``: the short side is drawn per clip,
        ``round(uniform(lo, hi))``, instead of ``short_side``.
      multi_scale_crop: the TSN multi-scale crop (LVT Kinetics) in place of
        RandomResizedCrop (set ``random_resized_crop=False``).
      auto_augment: AutoAugment policy (``'v0'``) or RandAugment spec
        (``'rand-m9-mstd0.5'``); ``''`` off. One draw per clip.
      random_erasing_prob, random_erasing_area, random_erasing_aspect: one
        zero-filled box per clip, the same on every frame (``augment.random_erasing``).
      seed: same seed, same batches (independently of ``num_workers`` and
        ``num_threads``).
      process_index, process_count: default ``jax.process_index()`` /
        ``jax.process_count()``.
      num_workers: grain worker processes (0: threads of this process only).
      prefetch: batches buffered ahead (default: ``num_threads``).
      num_threads: decoding threads (per worker process when
        ``num_workers > 0``; default: available cores, or 1 per worker).
      with_meta: batches also hold where each clip comes from (offline Token
        Labelling): ``'index'`` int64 ``[b]`` (the example's position in the
        split), ``'frame_indices'`` int32 ``[b, clip_len]``, ``'box'`` float32
        ``[b, 4]`` (the crop in stored-frame pixels), ``'flip'`` bool ``[b]``.

    Returns:
      A ``grain.IterDataset``; ``it = iter(ds)`` is a ``grain.DatasetIterator``
      whose ``get_state()`` / ``set_state()`` (or
      ``grain.checkpoint.CheckpointSave/CheckpointRestore`` with orbax) resume
      at exactly the next batch.
    """
    process_index, process_count = _process(process_index, process_count)
    source = _source(name, data_dir, split)
    if len(source) < process_count:
        raise ValueError(f"{name}:{split} has {len(source)} videos, fewer than {process_count} processes.")
    shuffle_seed, map_seed = _seeds(seed, 0)  # the same global stream on every process
    if with_meta:  # shuffled example indices; the map reads the records
        ds = grain.MapDataset.range(len(source)).shuffle(seed=shuffle_seed).repeat()
    else:
        ds = grain.MapDataset.source(source).shuffle(seed=shuffle_seed).repeat()
    ds = ds.random_map(_TrainClip(
        source=source if with_meta else None,
        clip_len=clip_len, frame_interval=frame_interval, crop_size=crop_size,
        short_side=short_side, random_resized_crop=random_resized_crop,
        area_range=tuple(area_range), aspect_range=tuple(aspect_range), flip=flip,
        sampling=sampling, short_side_range=tuple(short_side_range or ()) or None,
        multi_scale_crop=multi_scale_crop, auto_augment=auto_augment,
        random_erasing_prob=random_erasing_prob, random_erasing_area=tuple(random_erasing_area),
        random_erasing_aspect=tuple(random_erasing_aspect),
    ), seed=map_seed)
    ds = _ProcessRows(ds, batch_size, process_index, process_count)  # batches
    return _finish(ds, num_threads, prefetch, num_workers)


class EvalDataset:
    """One pass over the eval views of this process's shard.

    Iterating yields ``len(self)`` batches ``{'video': uint8 [b, v, t, crop,
    crop, 3], 'label': int32 [b], 'mask': bool [b]}``, ``v = num_clips *
    num_crops``; the same number on every process. Padded entries have
    ``mask=False``, ``label=0`` and zero video. Each ``iter()`` starts a new pass.
    """

    def __init__(self, dataset: grain.IterDataset, num_batches: int, num_videos: int,
                 num_real: int):
        self.dataset = dataset
        self.num_batches = num_batches
        self.num_videos = num_videos  # in the split, across all processes
        self.num_local_videos = num_real  # in this process's shard

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.dataset)


def create_eval_dataset(
    *,
    name: str,
    data_dir,
    split: str,
    batch_size: int,
    clip_len: int,
    frame_interval: int,
    num_clips: int,
    num_crops: int,
    crop_size: int,
    short_side: int | None,
    sampling: str = "dense",
    process_index: int | None = None,
    process_count: int | None = None,
    num_workers: int = 0,
    prefetch: int | None = None,
    num_threads: int | None = None,
) -> EvalDataset:
    """Finite test-protocol batches of this process (see ``EvalDataset``).

    Process ``p`` of ``P`` evaluates videos ``p::P``; every process yields
    ``ceil(ceil(N / P) / batch_size)`` batches, padding the rest with
    ``mask=False``. Views: ``num_clips`` uniformly spaced clips
    (``sample_test_indices``) x ``num_crops`` (1: centre crop, 3: ThreeCrop)
    after a short-side resize to ``short_side`` (``None``: stored size).
    ``sampling='segment'``: clip 0 takes the middle and clip 1 the start of
    each of ``clip_len`` segments (``sample_segment_test_indices``).
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}.")
    process_index, process_count = _process(process_index, process_count)
    source = _source(name, data_dir, split)
    n = len(source)
    num_real = len(range(process_index, n, process_count))
    per_process = math.ceil(n / process_count)
    num_batches = math.ceil(per_process / batch_size)
    view_shape = (num_clips * num_crops, clip_len, crop_size, crop_size, 3)
    ds = grain.MapDataset.range(num_batches * batch_size).map(_EvalViews(
        source, process_index, process_count, num_real, view_shape,
        clip_len=clip_len, frame_interval=frame_interval, num_clips=num_clips,
        num_crops=num_crops, crop_size=crop_size, short_side=short_side, sampling=sampling,
    ))
    ds = ds.batch(batch_size, drop_remainder=True)
    return EvalDataset(_finish(ds, num_threads, prefetch, num_workers), num_batches, n, num_real)


@dataclasses.dataclass(frozen=True)
class DatasetSummary:
    """What the training/eval code needs to know about a built dataset."""

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    splits: dict[str, int]  # split -> number of videos
    data_path: str  # the version folder holding the files
    skipped: dict[str, int]  # split -> videos skipped at build time (skipped_videos.json)

    def __getitem__(self, key: str) -> Any:  # dict-style access too
        return getattr(self, key)


class DatasetNotBuiltError(ConfigError):
    """The config names a dataset that is not built in its data_dir."""


def dataset_info(name: str, data_dir) -> DatasetSummary:
    """Classes and split sizes of a built dataset (e.g. to configure a model)."""
    build = (f"python -m dualformer_jax.data.build {name} --manual_dir RAW_VIDEOS "
             f"--data_dir {data_dir or '~/tensorflow_datasets'}")
    try:
        builder = tfds.builder(name, data_dir=os.fspath(data_dir) if data_dir else None)
    except Exception as e:
        raise DatasetNotBuiltError(f"dataset {name!r} is not built in data_dir={data_dir!r}: "
                                   f"build it with `{build}` (see docs/data.md)") from e
    if not os.path.isdir(os.fspath(builder.data_path)):
        raise DatasetNotBuiltError(f"dataset {name!r} is not built in data_dir={data_dir!r}: "
                                   f"build it with `{build}` (see docs/data.md)")
    info = builder.info
    label = info.features["label"]
    path = os.fspath(builder.data_path)
    skipped: dict[str, int] = {}
    report = os.path.join(path, "skipped_videos.json")
    if os.path.isfile(report):
        with open(report) as f:
            skipped = {s: c["skipped"] for s, c in json.load(f)["splits"].items()}
    return DatasetSummary(
        name=name,
        num_classes=int(label.num_classes),
        class_names=tuple(label.names),
        splits={s: int(v.num_examples) for s, v in info.splits.items()},
        data_path=path,
        skipped=skipped,
    )
