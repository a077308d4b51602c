"""Something-Something v2, the official LVT recipe (LVT ARCHITECTURE.md section 12;
docs/recipes.md).

SGD (momentum 0.9, Nesterov), lr 0.03 with 5 warm-up epochs from 0.003, cosine to 0 over
35 epochs, weight decay 1e-4 (not on the head biases), 32 clips per step, plain
cross-entropy (no smoothing, no mixup), AutoAugment v0, short side U[256, 320] then a
random 224 crop, no flips (the classes are directions), random erasing (p 0.5, one
zero-filled box on every frame); 16 frames, one per equal segment (TSN). The official
start is the authors' unreleased ImageNet LViT checkpoint; pass one you have:

    python train.py --config configs/lvt_ssv2.py --workdir workdir/lvt_ssv2 \
        --config.data.data_dir=DATA_DIR --config.init_from=PRETRAINED --config.init_partial=True

Evaluation is the official test: 2 clips (segment middles, then starts) x 3 crops at short
side 224, the logits of the 6 views summed. Test a trained run:

    python train.py --config configs/lvt_ssv2.py --workdir workdir/lvt_ssv2 --mode eval \
        --config.data.data_dir=DATA_DIR
"""

from dualformer_jax import config_base

HEAD_BIASES_NO_DECAY = tuple((f'{name}.bias', 1.0, 0.0) for name in (
    'consensus.mlp_head.0', 'consensus.mlp_head.1', 'consensus.mlp_head.4', 'new_fc'))


def get_config():
  c = config_base.base_config()
  c.model.variant = 'lvt_ssv2'
  c.model.num_classes = 174
  c.model.drop_rate = c.model.attn_drop_rate = c.model.drop_path_rate = 0.0
  c.model.head_dropout_rate = 0.5
  c.data.name = 'something_something_v2_video'
  c.data.train_split, c.data.eval_split = 'train', 'validation'
  c.data.mean = c.data.std = ()  # the family's: (x / 255 - 0.5) / 0.5
  c.data.sampling = 'segment'
  c.data.clip_len = 16  # segments, one frame each (frame_interval unused)
  c.data.short_side_range = (256, 320)  # scale jitter, then a random crop
  c.data.crop_size = 224
  c.data.random_resized_crop = False
  c.data.multi_scale_crop = False
  c.data.flip = False
  c.data.auto_augment = 'v0'
  c.data.random_erasing_prob = 0.5  # RAND_CROP 0.5; box geometry: timm's defaults
  c.data.eval_num_clips, c.data.eval_num_crops = 2, 3
  c.data.eval_short_side, c.data.eval_crop_size = 224, 224
  c.train.optimizer, c.train.momentum, c.train.nesterov = 'sgd', 0.9, True
  c.train.learning_rate = 0.03
  c.train.warmup_epochs = 5.0
  c.train.warmup_start_factor = 0.003 / 0.03  # WARMUP_START_LR 0.003
  c.train.cosine_by_epoch = False
  c.train.cosine_over_warmup = True  # SlowFast: warm-up ends on the cosine's value
  c.train.min_lr = 0.0
  c.train.num_epochs = 35.0
  c.train.weight_decay = 1e-4
  c.train.param_groups = HEAD_BIASES_NO_DECAY
  c.train.batch_size, c.train.grad_accum_steps = 32, 1
  c.train.grad_clip_norm = 0.0
  c.train.label_smoothing = 0.0
  c.train.mixup_alpha = 0.0
  c.eval.view_reduction = 'sum_logits'
  c.eval.batch_size = 16  # videos (96 clips) per eval step
  c.eval.every_steps = 5300  # about one epoch of SSv2 (169k videos) at 32 clips per step
  c.checkpoint.every_steps = 5300
  return c
