"""Kinetics-400, the official recipes for Tiny, Small and Base (docs/recipes.md).

Build the dataset first (docs/data.md); the official runs start from ImageNet 2D weights
inflated to 3D (not published), so pass a starting point if you have one:

    python train.py --config configs/k400.py:tiny --workdir workdir/k400_tiny \
        --config.data.data_dir=DATA_DIR --config.init_from=PRETRAINED

Validation during training: 1 clip x centre crop at short side 256. The official test
protocol (4 clips x 1 centre crop at short side 224):

    python train.py --config configs/k400.py:tiny --workdir workdir/k400_tiny --mode eval \
        --config.data.data_dir=DATA_DIR --config.data.eval_num_clips=4 \
        --config.data.eval_short_side=224

Reported top-1 (4 views): Tiny 79.5, Small 80.6, Base 81.1.
"""

from dualformer_jax import config_base

VARIANTS = ('tiny', 'small', 'base')
# variant: (drop_path, weight_decay, warmup_epochs, batch_size, grad_accum_steps); the
# official per-step batch is 64 clips (8 GPUs x videos_per_gpu 8, update_interval 1 or 2).
OFFICIAL = {
    'tiny': (0.1, 0.02, 3.0, 64, 1),
    'small': (0.2, 0.02, 2.5, 32, 2),
    'base': (0.3, 0.05, 2.5, 32, 2),
}


def get_config(variant='tiny'):
  if variant not in VARIANTS:
    raise ValueError(f'configs/k400.py:{variant}: choose one of {VARIANTS}.')
  c = config_base.kinetics_recipe(variant)
  (c.model.drop_path_rate, c.train.weight_decay, c.train.warmup_epochs,
   c.train.batch_size, c.train.grad_accum_steps) = OFFICIAL[variant]
  c.train.learning_rate, c.train.num_epochs = 1e-3, 30.0
  return c
