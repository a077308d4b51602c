"""Kinetics-400, the official LVT recipe (LVT ARCHITECTURE.md section 12; docs/recipes.md).

SGD (momentum 0.9, Nesterov), lr 0.035 with 5 warm-up epochs from 0.01, cosine to 0 over
40 epochs, weight decay 1e-5 (not on the head biases), 32 clips per step, label smoothing
0.3, mixup 0.4, AutoAugment v0, TSN multi-scale crop to 224 and flips; 16 frames 17 apart
(the official 16 over 256 frames at 30 fps). The official start is the authors' unreleased
ImageNet LViT checkpoint; pass one you have (loaded non-strictly, as officially):

    python train.py --config configs/lvt_k400.py --workdir workdir/lvt_k400 \
        --config.data.data_dir=DATA_DIR --config.init_from=PRETRAINED --config.init_partial=True

Evaluation (also during training) is the official test: 4 clips x 3 crops at short side
224, the logits of the 12 views summed. Test a trained run:

    python train.py --config configs/lvt_k400.py --workdir workdir/lvt_k400 --mode eval \
        --config.data.data_dir=DATA_DIR
"""

from dualformer_jax import config_base

# Weight decay applies to every parameter but the biases of the head modules.
HEAD_BIASES_NO_DECAY = tuple((f'{name}.bias', 1.0, 0.0) for name in (
    'consensus.mlp_head.0', 'consensus.mlp_head.1', 'consensus.mlp_head.4', 'new_fc'))


def kinetics_lvt(variant: str, dataset: str):
  """What the official Kinetics-400 and Kinetics-600 LVT recipes share (all of it)."""
  c = config_base.base_config()
  c.model.variant = variant
  c.model.drop_rate = c.model.attn_drop_rate = c.model.drop_path_rate = 0.0
  c.model.head_dropout_rate = 0.5  # MODEL.DROPOUT_RATE, applied twice as officially
  c.data.name = dataset
  c.data.train_split, c.data.eval_split = 'train', 'validation'
  c.data.mean = c.data.std = ()  # the family's: (x / 255 - 0.5) / 0.5
  c.data.sampling = 'dense'
  c.data.clip_len, c.data.frame_interval = 16, 17  # linspace(s, s + 255, 16): 17 apart
  c.data.short_side, c.data.crop_size = 256, 224  # videos stored at height 256
  c.data.random_resized_crop = False
  c.data.multi_scale_crop = True
  c.data.flip = True
  c.data.auto_augment = 'v0'
  c.data.random_erasing_prob = 0.0
  c.data.eval_num_clips, c.data.eval_num_crops = 4, 3
  c.data.eval_short_side, c.data.eval_crop_size = 224, 224
  c.train.optimizer, c.train.momentum, c.train.nesterov = 'sgd', 0.9, True
  c.train.learning_rate = 0.035
  c.train.warmup_epochs = 5.0
  c.train.warmup_start_factor = 0.01 / 0.035  # WARMUP_START_LR 0.01
  c.train.cosine_by_epoch = False
  c.train.cosine_over_warmup = True  # SlowFast: warm-up ends on the cosine's value  # set every iteration
  c.train.min_lr = 0.0
  c.train.num_epochs = 40.0
  c.train.weight_decay = 1e-5
  c.train.param_groups = HEAD_BIASES_NO_DECAY
  c.train.batch_size, c.train.grad_accum_steps = 32, 1  # train_k*_linear.sh (YAML: 64)
  c.train.grad_clip_norm = 0.0
  c.train.label_smoothing = 0.3
  c.train.mixup_alpha = 0.4
  c.eval.view_reduction = 'sum_logits'
  c.eval.batch_size = 8  # videos (96 clips) per eval step
  c.eval.every_steps = 7500  # about one epoch of Kinetics-400 at 32 clips per step
  c.checkpoint.every_steps = 7500
  return c


def get_config():
  return kinetics_lvt('lvt_k400', 'kinetics400_video')
