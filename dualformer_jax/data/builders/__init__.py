"""TFDS builders for video datasets; importing this module registers them.

=============================  ==================================================
Registered name                Dataset
=============================  ==================================================
``video_folder``               any ``<split>/<class>/<video>`` folder
``kinetics400_video``          Kinetics-400 (annotation CSVs + clips)
``kinetics600_video``          Kinetics-600 (annotation CSVs + clips)
``something_something_v2_video``  Something-Something v2 (JSON labels + webm)
``ucf101_video``               UCF-101, configs ``split1``..``split3``
``hmdb51_video``               HMDB-51, configs ``split1``..``split3``
``diving48_video``             Diving-48 (V2 JSON annotations)
=============================  ==================================================

Build with ``tfds build --imports dualformer_jax.data.builders NAME
--manual_dir DIR --data_dir OUT --file_format array_record`` or
``dualformer_jax.data.build_dataset(NAME, manual_dir=DIR, data_dir=OUT)``.
"""

from dualformer_jax.data.builders.annotated import (
    Diving48Video,
    Hmdb51Video,
    Kinetics400Video,
    Kinetics600Video,
    SomethingSomethingV2Video,
    Ucf101Video,
)
from dualformer_jax.data.builders.base import (
    SKIP_REPORT_FILENAME,
    VideoBuilder,
    VideoConfig,
    build_dataset,
)
from dualformer_jax.data.builders.video_folder import VideoFolder

__all__ = [
    "SKIP_REPORT_FILENAME",
    "Diving48Video",
    "Hmdb51Video",
    "Kinetics400Video",
    "Kinetics600Video",
    "SomethingSomethingV2Video",
    "Ucf101Video",
    "VideoBuilder",
    "VideoConfig",
    "VideoFolder",
    "build_dataset",
]
