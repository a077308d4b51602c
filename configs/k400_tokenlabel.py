"""Kinetics-400 with Token Labelling, the official Tiny and Small recipes (no reported result).

Every official value is here, including `config.token_labelling` (teacher DualFormer-Base
trained on K400, gamma 0.5, top-5 soft targets, no MixToken). Name the teacher with
`--config.token_labelling.teacher` (the official K400 Base `.pth`, or one of our
checkpoints; its classes must be the student's): the student then gets the Token
Labelling head and the frozen teacher labels every token in the same jitted step (see
docs/token_labelling.md). Without a teacher this trains the plain recipe with the Token
Labelling batch (Tiny: 128 clips per step, twice configs/k400.py:tiny's).

    python train.py --config configs/k400_tokenlabel.py:tiny --workdir workdir/k400_tl_tiny \
        --config.data.data_dir=DATA_DIR --config.init_from=PRETRAINED \
        --config.token_labelling.teacher=checkpoints/dualformer_base_patch244_window877.pth

Test as configs/k400.py says (4 clips x 1 crop at short side 224, `--mode eval`).
"""

from dualformer_jax import config_base

VARIANTS = ('tiny', 'small')
# variant: (drop_path, warmup_epochs, batch_size, grad_accum_steps)
OFFICIAL = {
    'tiny': (0.1, 3.0, 64, 2),  # 16 videos per GPU x 8 GPUs = 128 clips per step
    'small': (0.2, 2.5, 32, 2),  # 64 clips per step
}


def get_config(variant='tiny'):
  if variant not in VARIANTS:
    raise ValueError(f'configs/k400_tokenlabel.py:{variant}: choose one of {VARIANTS}.')
  c = config_base.kinetics_recipe(variant)
  (c.model.drop_path_rate, c.train.warmup_epochs, c.train.batch_size,
   c.train.grad_accum_steps) = OFFICIAL[variant]
  c.train.learning_rate, c.train.weight_decay, c.train.num_epochs = 1e-3, 0.02, 30.0
  tl = c.token_labelling
  tl.teacher = ''  # official: checkpoints/k400/dualformer_base_patch244_window877.pth
  tl.teacher_variant = 'base'
  tl.gamma = 0.5
  tl.top_k = 5
  tl.mix_token = False
  tl.token_dropout_rate = 0.5
  tl.temporal_average = 'interleaved'  # never used: student and teacher grids agree
  tl.top_k_only = False
  return c
