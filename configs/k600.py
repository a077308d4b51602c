"""Kinetics-600, Base: the official recipe (from ImageNet-22k 2D weights; top-1 85.2).

    python train.py --config configs/k600.py:base --workdir workdir/k600_base \
        --config.data.data_dir=DATA_DIR --config.init_from=PRETRAINED

Test as configs/k400.py says (4 clips x 1 crop at short side 224, `--mode eval`).
"""

from dualformer_jax import config_base


def get_config(variant='base'):
  if variant != 'base':
    raise ValueError('configs/k600.py has only the official Base recipe: use :base.')
  c = config_base.kinetics_recipe('base', dataset='kinetics600_video')
  c.model.num_classes = 600
  c.model.drop_path_rate = 0.3
  c.train.learning_rate, c.train.weight_decay = 5e-4, 0.05
  c.train.num_epochs, c.train.warmup_epochs = 30.0, 2.5
  c.train.batch_size, c.train.grad_accum_steps = 32, 2  # 64 clips per step
  return c
