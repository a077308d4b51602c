"""Our training recipe for Mobile-Former-3D (fact sheet section 5.4): no source gives one.

Section 5.4 proposes a starting point, derived from the official image recipe (AdamW,
peak lr 1e-3 at batch 1024, cosine to 1e-5 after warm-up, label smoothing 0.1, weight
decay 0.1 without decay on 1-D parameters and biases, dropout 0.2-0.3, no drop path).
Every number here is a hypothesis for our own experiments, not a published recipe.
`configs/mobile_former_3d_k400.py` and `configs/mobile_former_3d_ssv2.py` call
`video_recipe`.
"""

import ml_collections

from dualformer_jax import config_base
from dualformer_jax.models.mobile_former import variants

VARIANTS = ('xs', 's', 'm', 'l')
REFERENCE_BATCH = 1024  # the image recipe's global batch (8 GPUs x 128)
REFERENCE_LR = 1e-3  # peak lr at REFERENCE_BATCH, scaled linearly with the batch
MIN_LR = 1e-5
WARMUP_START_LR = 1e-4  # timm's warm-up starts at 1e-4 (0.1 x the reference peak)
WEIGHT_DECAY = 0.1
LABEL_SMOOTHING = 0.1
MIXUP_ALPHA = 0.2  # optional in 5.4; on in both recipes
CROP_PCT = 0.875  # the official image evaluation: resize to crop / 0.875, centre crop
RAND_AUGMENT = 'rand-m9-mstd0.5'  # timm --aa of the image recipe (2.13), one draw per clip

# No weight decay on 1-D parameters and biases (timm's `add_weight_decay`), written as
# mmcv custom keys on official names, where the longest matching key alone applies:
# biases, LayerNorms (`*norm*`) and BatchNorms (`*.1.weight` after a conv, bneck-lite's
# `conv.5`, the head's `classifier.conv.2`) get decay x0; the two Linear/conv weights
# whose names also end in `.1.weight` keep it.
NO_DECAY_PARAM_GROUPS = (
    ('bias', 1.0, 0.0),
    ('norm', 1.0, 0.0),
    ('.1.weight', 1.0, 0.0),
    ('conv.5.weight', 1.0, 0.0),
    ('classifier.conv.2.weight', 1.0, 0.0),
    ('classifier.conv.1.weight', 1.0, 1.0),
    ('classifier.classifier.1.weight', 1.0, 1.0),
)


def dropout(variant: str) -> float:
  """Dropout before the classifier: the official image recipe's `--drop` of the widths
  the video variant takes (0.2 for MF-151M/214M, 0.3 for MF-294M/508M)."""
  widths = variants.VIDEO_FACTS[f'mobile_former_3d_{variant}']['widths']
  return variants.IMAGE_FACTS[widths]['drop']


def video_recipe(variant: str, dataset: str, batch_size: int = 256
                 ) -> ml_collections.ConfigDict:
  """What both recipes share; the caller sets frame sampling, flips, epochs, views."""
  if variant not in VARIANTS:
    raise ValueError(f'Mobile-Former-3D variant {variant!r}: choose one of {VARIANTS}.')
  name = f'mobile_former_3d_{variant}'
  t, h, _ = variants.VIDEO_VARIANTS[name]['video_size']
  c = config_base.base_config()
  c.model.variant = name
  c.model.video_size = (t, h, h)
  c.model.drop_path_rate = 0.0
  c.model.head_dropout_rate = dropout(variant)
  c.data.name = dataset
  c.data.clip_len = t
  c.data.crop_size = c.data.eval_crop_size = h
  c.data.short_side = c.data.eval_short_side = round(h / CROP_PCT)
  c.data.random_resized_crop = True
  c.data.area_range, c.data.aspect_range = (0.08, 1.0), (3 / 4, 4 / 3)
  # 5.4: RandAugment with one op draw per clip, the image recipe's rand-m9-mstd0.5.
  c.data.auto_augment = RAND_AUGMENT
  c.train.optimizer = 'adamw'
  c.train.b1, c.train.b2 = 0.9, 0.999
  c.train.batch_size = batch_size
  c.train.learning_rate = REFERENCE_LR * batch_size / REFERENCE_BATCH
  c.train.warmup_start_factor = WARMUP_START_LR / REFERENCE_LR
  c.train.min_lr = MIN_LR
  c.train.weight_decay = WEIGHT_DECAY
  c.train.param_groups = NO_DECAY_PARAM_GROUPS
  c.train.label_smoothing = LABEL_SMOOTHING
  c.train.mixup_alpha = MIXUP_ALPHA
  c.train.grad_clip_norm = 0.0
  c.eval.batch_size = 64
  c.eval.every_steps = 5000
  c.checkpoint.every_steps = 1000
  return c
