"""Command line for building the video datasets without TensorFlow.

TFDS's own ``tfds build`` command imports TensorFlow at start-up; this one
takes the same flags and needs only TFDS, PyAV and Pillow::

    python -m dualformer_jax.data.build video_folder --manual_dir DIR --data_dir OUT
    python -m dualformer_jax.data.build video_folder --config '{"name": "mine", "short_side": 128}' ...
    python -m dualformer_jax.data.build ucf101_video/split1 --manual_dir DIR --data_dir OUT
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from dualformer_jax.cli import errors


def main(argv: list[str] | None = None) -> int:
    """`dualformer-build`: user errors as one `error: ...` line (`--verbose`: traceback)."""
    return errors.run_main(_main, argv)


def _main(argv: list[str]) -> int:
    parser = errors.ArgumentParser(
        prog="python -m dualformer_jax.data.build",
        description="Build video TFDS datasets (ArrayRecord) from raw video files.",
    )
    parser.add_argument("datasets", nargs="+", help="NAME or NAME/CONFIG, e.g. video_folder, ucf101_video/split2")
    parser.add_argument("--manual_dir", required=True, help="folder holding the raw videos/annotations")
    parser.add_argument("--data_dir", default=os.path.join("~", "tensorflow_datasets"),
                        help="TFDS data directory to write into (default: %(default)s)")
    parser.add_argument("--config", default=None,
                        help="config name, or JSON kwargs of VideoConfig for a custom config, "
                             "e.g. '{\"name\": \"mine\", \"short_side\": 128}'")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="decoding processes (default: available cores)")
    parser.add_argument("--file_format", default="array_record", choices=["array_record"],
                        help="only array_record (what the grain pipeline reads)")
    parser.add_argument("--imports", "-i", default="",
                        help="comma-separated extra modules to import (registering more builders)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of errors")
    args = parser.parse_args(argv)

    from dualformer_jax.data import builders  # noqa: F401  (registers the builders)
    from dualformer_jax.data.builders.base import VideoConfig, build_dataset

    for module in filter(None, args.imports.split(",")):
        importlib.import_module(module.strip())
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    data_dir = os.path.expanduser(args.data_dir)
    for ds in args.datasets:
        name, _, config = ds.partition("/")
        if config and args.config:
            parser.error(f"{ds}: give the config either as NAME/CONFIG or with --config, not both")
        config = config or args.config
        if config and config.startswith("{"):
            try:
                config = VideoConfig(**json.loads(config))
            except (ValueError, TypeError) as e:
                raise errors.UserError(f"--config {config}: not the JSON kwargs of VideoConfig "
                                       f"({e})") from e
        try:
            cls = tfds.core.registered.imported_builder_cls(name)
        except Exception:  # pylint: disable=broad-except
            parser.error(f"unknown dataset {name!r}; registered video builders: "
                         "video_folder, kinetics400_video, kinetics600_video, "
                         "something_something_v2_video, ucf101_video, hmdb51_video, diving48_video")
        configs = [config] if config else [c.name for c in cls.BUILDER_CONFIGS]
        if not os.path.isdir(os.path.expanduser(args.manual_dir)):
            raise errors.UserError(f"--manual_dir {args.manual_dir} does not exist: give the folder "
                                   f"holding the raw videos ({name}'s layout is in docs/data.md)")
        for c in configs:
            build_dataset(cls, manual_dir=os.path.expanduser(args.manual_dir),
                          data_dir=data_dir, config=c, num_workers=args.num_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
