"""Video data: TFDS builders, the synthetic motion dataset and grain pipelines.

Attributes are imported lazily so that light sub-modules (``video_io``,
``sampling``) load without TFDS/grain/JAX, which keeps the build worker
processes quick to start.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # sampling
    "sample_train_indices": "sampling",
    "sample_test_indices": "sampling",
    "sample_segment_train_indices": "sampling",
    "sample_segment_test_indices": "sampling",
    # augmentations (host)
    "auto_augment": "augment",
    "random_erasing": "augment",
    "multi_scale_crop_box": "augment",
    "check_recipe_config": "augment",
    # transforms
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "normalize": "transforms",
    # video files
    "read_video": "video_io",
    "write_video": "video_io",
    # builders
    "VideoConfig": "builders",
    "build_dataset": "builders",
    "SKIP_REPORT_FILENAME": "builders",
    # synthetic dataset
    "SYNTHETIC_CLASSES": "synthetic",
    "SYNTHETIC_ANGLES": "synthetic",
    "generate_synthetic_motion_videos": "synthetic",
    "ensure_synthetic_dataset": "synthetic",
    # pipelines
    "create_train_dataset": "pipeline",
    "create_eval_dataset": "pipeline",
    "dataset_info": "pipeline",
    "DatasetSummary": "pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
