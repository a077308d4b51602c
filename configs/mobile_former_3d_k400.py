"""Kinetics-400 for Mobile-Former-3D: OUR recipe (fact sheet section 5.4), not an official
one. Video Mobile-Former published no recipe; these values start from the official image
recipe and are hypotheses to tune (docs/mobile_former.md).

Variants `xs`, `s` (default: the 1 GFLOP point, 8 x 160 x 160), `m`, `l`. Train clips:
8 frames at stride 8 (`xs`, `s`) or 16 at stride 4 (`m`, `l`), random-resized crop and
flip (the same for every frame of a clip), mixup 0.2, label smoothing 0.1; AdamW at
lr 1e-3 x batch / 1024 (batch 256: 2.5e-4), weight decay 0.1 (none on 1-D parameters
and biases), 5 warm-up epochs from 1e-4 x batch / 1024, cosine to 1e-5, 100 epochs from
inflated ImageNet Mobile-Former weights (pass them with `init_from_2d`).

    python train.py --config configs/mobile_former_3d_k400.py:s --workdir workdir/mf3d_s_k400 \
        --config.data.data_dir=DATA_DIR --config.init_from_2d=mobile_former_214m.pth

Validation during training: 1 clip x 1 centre crop (160 of short side 183). Multi-view
test (4 clips x 3 crops); report GFLOPs per view x views:

    python train.py --config configs/mobile_former_3d_k400.py:s --workdir workdir/mf3d_s_k400 \
        --mode eval --config.data.data_dir=DATA_DIR --config.data.eval_num_clips=4 \
        --config.data.eval_num_crops=3
"""

from dualformer_jax.models.mobile_former import recipe

VARIANTS = recipe.VARIANTS
FRAME_INTERVAL = {'xs': 8, 's': 8, 'm': 4, 'l': 4}  # 8 x 8 or 16 x 4 frames (5.4)


def get_config(variant='s'):
  if variant not in VARIANTS:
    raise ValueError(f'configs/mobile_former_3d_k400.py:{variant}: choose one of {VARIANTS}.')
  c = recipe.video_recipe(variant, 'kinetics400_video')
  c.data.train_split, c.data.eval_split = 'train', 'validation'
  c.data.sampling = 'dense'
  c.data.frame_interval = FRAME_INTERVAL[variant]
  c.data.flip = True
  c.data.eval_num_clips, c.data.eval_num_crops = 1, 1
  c.train.num_epochs, c.train.warmup_epochs = 100.0, 5.0
  return c
