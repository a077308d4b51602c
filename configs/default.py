"""The embedded default: a small model of any family on the synthetic motion dataset.

Generates and builds the dataset under ./data on first use (under a minute), then trains
for a few minutes on a CPU and evaluates on the 128 held-out videos (2 clips each).

    python train.py --config configs/default.py --workdir workdir/default
    python train.py --config configs/default.py:lvt --workdir workdir/default_lvt
    python train.py --config configs/default.py:mobile_former_3d --workdir workdir/default_mf

The argument is a model family (`dualformer` when omitted).
"""

from dualformer_jax import config_base

FAMILIES = ('dualformer', 'lvt', 'mobile_former_3d')


def _synthetic(c):
  """The synthetic motion dataset at 8 x 64 x 64, no flips (the class is a direction)."""
  c.data.name = 'video_folder/synthetic_motion'
  c.data.synthetic = True
  c.data.eval_split = 'test'
  c.data.clip_len = 8
  c.data.frame_interval = 1  # the shapes move 1.3-1.9 px per frame
  c.data.crop_size = 64
  c.data.short_side = 64
  c.data.area_range = (0.6, 1.0)
  c.data.flip = False  # the class is the direction of motion
  c.data.eval_num_clips = 2
  c.data.eval_short_side = 64
  c.data.eval_crop_size = 64
  c.train.batch_size = 16
  c.eval.batch_size = 16
  return c


def _dualformer(c):
  c.model.variant = 'nano'  # 8x64x64 clips, 2.3M parameters
  c.model.drop_path_rate = 0.0
  c.model.head_dropout_rate = 0.0
  c.train.num_epochs = 16.0  # 768 training videos: 48 steps per epoch, 768 steps
  c.train.warmup_epochs = 1.0
  c.train.learning_rate = 5e-4
  c.train.weight_decay = 0.02
  c.train.log_every_steps = 24
  c.eval.every_steps = 384  # halfway and at the end
  c.checkpoint.every_steps = 384
  return c


def _lvt(c):
  c.model.variant = 'lvt_nano'  # 8x64x64 clips (its video_size), 0.3M parameters
  c.model.drop_path_rate = 0.0
  c.model.head_dropout_rate = 0.0
  # 2.6-3.8 px per frame: LVT sees motion only between 14-px tokens of adjacent frames.
  c.data.frame_interval = 2
  # 48 steps per epoch, 648 steps: a step takes 1.17x DualFormer-nano's
  # (benchmarks/default_step_ratio.py), so 648 fit in the time of its 768.
  c.train.num_epochs = 13.5
  c.train.warmup_epochs = 1.0
  # Held constant after warm-up: LVT-nano first sits on a plateau at chance and leaves it
  # between steps 216 and 500 with the seed (docs/model_families.md).
  c.train.learning_rate = 1e-3
  c.train.min_lr = 1e-3
  c.train.weight_decay = 0.05
  c.train.log_every_steps = 24
  c.eval.every_steps = 216
  c.checkpoint.every_steps = 216
  return c


def _mobile_former_3d(c):
  c.model.variant = 'mobile_former_3d_xs'  # MF-151M widths, 6 tokens
  c.model.video_size = (8, 64, 64)  # the clips (any size works; checkpoints record it)
  c.model.drop_path_rate = 0.0
  c.model.head_dropout_rate = 0.0
  # 48 steps per epoch, 180 steps: a step takes 3.4x DualFormer-nano's and its compile
  # 2.5x (benchmarks/default_step_ratio.py), so the whole run (compile, 180 steps, one
  # evaluation) takes no longer than the DualFormer default run (docs/mobile_former.md).
  c.train.num_epochs = 3.75
  c.train.warmup_epochs = 1.0
  c.train.learning_rate = 1e-3
  c.train.weight_decay = 0.02
  c.train.log_every_steps = 20
  c.eval.every_steps = 180  # at the end
  c.checkpoint.every_steps = 90
  return c


def get_config(family='dualformer'):
  builders = {'dualformer': _dualformer, 'lvt': _lvt, 'mobile_former_3d': _mobile_former_3d}
  if family not in builders:
    raise ValueError(f'configs/default.py:{family}: choose one of {FAMILIES}.')
  return builders[family](_synthetic(config_base.base_config()))
