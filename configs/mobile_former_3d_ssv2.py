"""Something-Something v2 for Mobile-Former-3D: OUR recipe (fact sheet section 5.4), not an
official one. Video Mobile-Former published no recipe; these values start from the
official image recipe and are hypotheses to tune (docs/mobile_former.md).

Variants `xs`, `s` (default), `m`, `l`. TSN-style segment sampling (one frame in each of
8 segments for `xs`, `s`; 16 for `m`, `l`) and NO horizontal flip: labels such as
"moving something from left to right" depend on it. Random-resized crop, mixup 0.2,
label smoothing 0.1; AdamW at lr 1e-3 x batch / 1024 (batch 256: 2.5e-4), weight decay
0.1 (none on 1-D parameters and biases), 5 warm-up epochs, cosine to 1e-5, 60 epochs
from inflated ImageNet Mobile-Former weights (or a Kinetics-400 checkpoint of ours with
`init_from`).

    python train.py --config configs/mobile_former_3d_ssv2.py:s --workdir workdir/mf3d_s_ssv2 \
        --config.data.data_dir=DATA_DIR --config.init_from_2d=mobile_former_214m.pth

Validation: 1 view (the segment middles, centre crop). Multi-view test (2 clips: segment
middles and starts, x 3 crops); report GFLOPs per view x views:

    python train.py --config configs/mobile_former_3d_ssv2.py:s --workdir workdir/mf3d_s_ssv2 \
        --mode eval --config.data.data_dir=DATA_DIR --config.data.eval_num_clips=2 \
        --config.data.eval_num_crops=3
"""

from dualformer_jax.models.mobile_former import recipe

VARIANTS = recipe.VARIANTS


def get_config(variant='s'):
  if variant not in VARIANTS:
    raise ValueError(f'configs/mobile_former_3d_ssv2.py:{variant}: choose one of {VARIANTS}.')
  c = recipe.video_recipe(variant, 'something_something_v2_video')
  c.data.train_split, c.data.eval_split = 'train', 'validation'
  c.data.sampling = 'segment'  # clip_len segments over the whole video
  c.data.frame_interval = 1  # unused by segment sampling
  c.data.flip = False  # the class can be the direction of motion
  c.data.eval_num_clips, c.data.eval_num_crops = 1, 1
  c.train.num_epochs, c.train.warmup_epochs = 60.0, 5.0
  return c
