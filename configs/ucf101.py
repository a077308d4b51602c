"""UCF-101 (split 1), fine-tuned from Kinetics-400: the official Small recipe (default)
and the official Tiny recipe (`:tiny`, 16 frames).

Small: 32 frames at interval 4, drop-path 0.3, weight decay 0.1 (the README's 97.5 top-1
has Small's numbers). Tiny: a 16-frame model started from the 32-frame Kinetics-400 Tiny
(`init_partial`: the 9 temporal pooling kernels whose shape differs, and the head, start
from init and are logged), drop-path 0.2, weight decay 0.05. Both: Norm-C, 16 epochs,
128 clips per step; validation 4 clips x centre crop at short side 256.

    python train.py --config configs/ucf101.py --workdir workdir/ucf101 \
        --config.data.data_dir=DATA_DIR --config.init_from=checkpoints/small_k400
    python train.py --config configs/ucf101.py:tiny --workdir workdir/ucf101_tiny \
        --config.data.data_dir=DATA_DIR --config.init_from=checkpoints/tiny_k400

The official test (4 clips x 3 crops at short side 224): add `--mode eval
--config.data.eval_num_crops=3 --config.data.eval_short_side=224`.
"""

from dualformer_jax import config_base


def get_config(variant='small'):
  if variant not in ('small', 'tiny'):
    raise ValueError(f"configs/ucf101.py:{variant}: choose one of ('small', 'tiny').")
  c = config_base.finetune_recipe('ucf101_video/split1', variant)
  c.train.num_epochs = 16.0
  c.train.batch_size, c.train.grad_accum_steps = 32, 4  # 128 clips per step
  if variant == 'small':
    c.model.drop_path_rate = 0.3
    c.train.weight_decay = 0.1
  else:
    c.model.drop_path_rate = 0.2
    c.train.weight_decay = 0.05
    c.model.video_size = (16, 224, 224)
    c.data.clip_len = 16
    c.init_partial = True
  return c
