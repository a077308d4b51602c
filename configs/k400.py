"""Kinetics-400, the official recipe, for Tiny, Small or Base.

Build the dataset first (docs/data.md), convert the starting weights, then:

    python train.py --config configs/k400.py:tiny --workdir workdir/k400_tiny \
        --config.data.data_dir=DATA_DIR --config.init_from=PRETRAINED

The official test protocol (4 clips x 1 crop, short side 224):

    python train.py --config configs/k400.py:tiny --workdir workdir/k400_tiny --mode eval \
        --config.data.data_dir=DATA_DIR --config.data.eval_num_clips=4 \
        --config.data.eval_short_side=224

Reported top-1 (4 views): Tiny 79.5, Small 80.6, Base 81.1.
"""

from dualformer_jax import config_base

VARIANTS = ('tiny', 'small', 'base')


def get_config(variant='tiny'):
  if variant not in VARIANTS:
    raise ValueError(f'configs/k400.py:{variant}: choose one of {VARIANTS}.')
  return config_base.kinetics_recipe(variant)
