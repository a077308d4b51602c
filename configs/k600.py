"""Kinetics-600, Base from ImageNet-22k weights (the official recipe; top-1 85.2).

    python train.py --config configs/k600.py:base --workdir workdir/k600_base \
        --config.data.data_dir=DATA_DIR --config.init_from=PRETRAINED
"""

from dualformer_jax import config_base


def get_config(variant='base'):
  if variant != 'base':
    raise ValueError('configs/k600.py has only the official Base recipe: use :base.')
  c = config_base.kinetics_recipe('base')
  c.data.name = 'kinetics600_video'
  c.model.num_classes = 600
  c.model.drop_path_rate = 0.3
  c.train.learning_rate = 5e-4
  c.train.weight_decay = 0.05
  c.train.warmup_epochs = 2.5
  return c
