"""Fields shared by every training config (`configs/*.py` start from `base_config()`).

Every field has a default here, so a typo in an override (`--config.train.lrr=1`) fails
with the key's name instead of being ignored.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Model: a variant of any family (`models.all_variants()`) plus attribute overrides.
  c.model = ml_collections.ConfigDict()
  c.model.variant = 'tiny'
  c.model.num_classes = -1  # -1: the dataset's number of classes.
  c.model.video_size = ()  # (T, H, W) the model is built for; (): the variant's
  c.model.embed_dims = ()  # per-stage overrides of the variant; (): the variant's
  c.model.num_heads = ()
  c.model.depths = ()
  c.model.drop_rate = 0.0
  c.model.attn_drop_rate = 0.0
  c.model.drop_path_rate = 0.1
  c.model.head_dropout_rate = 0.5
  c.model.dtype = 'float32'  # compute dtype: float32 or bfloat16 (parameters stay float32)
  c.model.remat = False  # recompute block activations in the backward pass

  # Starting point: '' (from scratch), an official .pth/.safetensors, or our checkpoint dir.
  c.init_from = ''
  c.init_from_2d = ''  # a 2D ImageNet .pth/.safetensors to inflate (docs/imagenet_inflation.md)
  # True: load the tensors of init_from that fit the model, keep init for the others
  # (each logged by name with both shapes); False: a mismatch (other than the head) fails.
  c.init_partial = False

  # Token Labelling (official `*_tokenlabel_*` recipes, docs/token_labelling.md): a
  # non-empty `teacher` trains the student with the frozen teacher's token labels.
  c.token_labelling = ml_collections.ConfigDict()
  c.token_labelling.teacher = ''  # the teacher's checkpoint (official: K400 DualFormer-B)
  c.token_labelling.labels = ''  # off-line instead: stored labels (`... token_labelling annotate`)
  c.token_labelling.teacher_variant = 'base'  # expected variant of an official .pth ('': any)
  c.token_labelling.gamma = 0.5  # loss = gamma * video CE + (1 - gamma) * token soft CE
  c.token_labelling.top_k = 5  # teacher logits kept per token for the soft targets
  c.token_labelling.mix_token = False
  # Fixes of official quirks, off by default (docs/token_labelling.md): 'adjacent'
  # averages a teacher's extra frames r*i .. r*i+r-1 onto student frame i (official
  # 'interleaved': i, i+D, ...); top_k_only: softmax over the top k alone (official: the
  # other classes' logits are set to 0 and keep some probability).
  c.token_labelling.temporal_average = 'interleaved'
  c.token_labelling.top_k_only = False
  c.token_labelling.token_dropout_rate = 0.5  # dropout before the token branch

  # Data: a TFDS dataset (see docs/data.md). `synthetic=True` generates and builds the
  # synthetic motion dataset under `data_dir` if it is absent.
  c.data = ml_collections.ConfigDict()
  c.data.name = ''
  c.data.data_dir = 'data'
  c.data.synthetic = False
  c.data.train_split = 'train'
  c.data.eval_split = 'validation'
  c.data.clip_len = 32
  c.data.frame_interval = 2
  c.data.crop_size = 224
  c.data.short_side = 256  # resize before RandomResizedCrop (None: as stored)
  c.data.random_resized_crop = True
  c.data.area_range = (0.08, 1.0)
  c.data.aspect_range = (3 / 4, 4 / 3)
  c.data.flip = True
  # Recipe options (data/augment.py, data/sampling.py; docs/data.md). Frame sampling:
  # 'dense' (clip_len frames at frame_interval) or 'segment' (one frame in each of
  # clip_len equal segments, TSN; eval: segment middles, then starts).
  c.data.sampling = 'dense'
  c.data.short_side_range = ()  # (lo, hi): train short side U[lo, hi] per clip; (): short_side
  c.data.multi_scale_crop = False  # TSN multi-scale crop (needs random_resized_crop=False)
  c.data.auto_augment = ''  # per clip: AutoAugment policy 'v0' or RandAugment 'rand-m9-mstd0.5' (timm --aa); '' off
  c.data.random_erasing_prob = 0.0  # one zero-filled box per clip, all frames
  c.data.random_erasing_area = (0.02, 1 / 3)  # erased fraction of the frame
  c.data.random_erasing_aspect = (0.3, 1 / 0.3)  # erased box height / width
  c.data.num_workers = 0  # grain worker processes (0: in the main process, threads)
  c.data.prefetch = 2
  # Input normalization (RGB, 0-255 scale) for training, eval and predict; (): the model
  # family's official values (DualFormer: ImageNet's).
  c.data.mean = ()
  c.data.std = ()
  # Evaluation views: num_clips uniformly spaced clips x num_crops crops.
  c.data.eval_num_clips = 1
  c.data.eval_num_crops = 1
  c.data.eval_short_side = 256
  c.data.eval_crop_size = 224

  # Optimization: AdamW (or SGD), linear warm-up then cosine (optim.py).
  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64  # global batch per train step (all devices, all hosts)
  c.train.grad_accum_steps = 1  # optimizer batch = batch_size * grad_accum_steps
  c.train.num_epochs = 30.0
  c.train.num_steps = 0  # >0: optimizer steps, overriding num_epochs
  c.train.warmup_epochs = 3.0
  c.train.learning_rate = 1e-3
  c.train.b1 = 0.9
  c.train.b2 = 0.999
  c.train.weight_decay = 0.02
  c.train.backbone_lr_mult = 1.0  # lr multiplier outside the head (when no param_groups)
  # mmcv custom_keys: ((key, lr_mult, decay_mult), ...) on official parameter names, the
  # longest matching key alone applies; (): backbone_lr_mult and no decay on norm/pos_block.
  c.train.param_groups = ()
  c.train.optimizer = 'adamw'  # 'adamw' or 'sgd'
  c.train.momentum = 0.9  # sgd only
  c.train.nesterov = False  # sgd only
  c.train.warmup_start_factor = 0.0  # warm-up starts at this x lr (mmcv warmup_ratio)
  c.train.cosine_by_epoch = False  # True: cosine stepped once per epoch (mmcv by_epoch)
  c.train.min_lr = 0.0
  # True (SlowFast, LVT): the cosine spans warm-up too; warm-up ends on its value.
  c.train.cosine_over_warmup = False
  c.train.grad_clip_norm = 0.0  # 0: no clipping
  c.train.label_smoothing = 0.0
  c.train.mixup_alpha = 0.0  # >0: mixup of every batch, lambda ~ Beta(alpha, alpha); 0: off
  c.train.log_every_steps = 10

  # Evaluation during training (full eval split, multi-view).
  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 0  # 0: only at the end
  c.eval.batch_size = 8  # global number of videos per eval step
  c.eval.at_end = True
  # Views of a video combined by 'mean_softmax' (mean of probabilities) or 'sum_logits'.
  c.eval.view_reduction = 'mean_softmax'

  # Checkpoints (orbax) under WORKDIR/checkpoints.
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 500
  c.checkpoint.keep = 3  # latest checkpoints kept (the best by eval top-1 is kept too)
  c.checkpoint.async_save = True

  # JAX profiler trace of steps start_step+1 .. start_step+num_steps into WORKDIR/profile
  # (TensorBoard's Profile tab; docs/performance.md); start_step -1: off.
  c.profile = ml_collections.ConfigDict()
  c.profile.start_step = -1
  c.profile.num_steps = 3

  # Parallelism: 'jit' (sharded by logical axis rules over the mesh) or 'pmap'.
  c.parallelism = 'jit'
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1: all remaining devices
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.mesh.num_devices = 0  # use the first N devices (0: all)
  return c


# The official recipes (RECIPES.md: sail-sg/dualformer configs, section 4).
NORM_K = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))  # Kinetics (ImageNet)
NORM_C = ((104.0, 117.0, 128.0), (1.0, 1.0, 1.0))  # fine-tuning configs, RGB order
# paramwise_cfg custom_keys: only the longest key applies, so `pos_block` gets lr x1 and
# no decay, every other backbone parameter (norms included) lr x0.1 with decay; the head
# matches no key (lr x1, decay x1) and `norm` never applies.
OFFICIAL_PARAM_GROUPS = (('pos_block', 1.0, 0.0), ('norm', 1.0, 0.0), ('backbone', 0.1, 1.0))


def official_recipe(variant: str) -> ml_collections.ConfigDict:
  """What every official config shares: AdamW (0.9, 0.999), the paramwise groups, warm-up
  from 0.1x per iteration, cosine per epoch to 0, head dropout 0.5, train pipeline short
  side 256 -> RandomResizedCrop (0.08-1, 3/4-4/3) -> 224 -> flip 0.5, no clipping."""
  c = base_config()
  c.model.variant = variant
  c.model.head_dropout_rate = 0.5
  c.model.drop_rate = c.model.attn_drop_rate = 0.0
  c.data.short_side, c.data.crop_size = 256, 224
  c.data.random_resized_crop = True
  c.data.area_range, c.data.aspect_range = (0.08, 1.0), (3 / 4, 4 / 3)
  c.data.flip = True
  c.train.optimizer = 'adamw'
  c.train.b1, c.train.b2 = 0.9, 0.999
  c.train.param_groups = OFFICIAL_PARAM_GROUPS
  c.train.backbone_lr_mult = 1.0  # given by param_groups
  c.train.warmup_start_factor = 0.1
  c.train.cosine_by_epoch = True
  c.train.min_lr = 0.0
  c.train.grad_clip_norm = 0.0
  c.train.label_smoothing = 0.0
  c.checkpoint.every_steps = 1000
  return c


def kinetics_recipe(variant: str, dataset: str = 'kinetics400_video'
                    ) -> ml_collections.ConfigDict:
  """Kinetics (32 x 2 frames, Norm-K): validation 1 clip x centre crop at short side 256.
  The official test (4 clips x 1 crop at short side 224) is `--mode eval` with
  `--config.data.eval_num_clips=4 --config.data.eval_short_side=224`.
  The caller sets drop-path, lr, decay, warm-up, epochs and batch."""
  c = official_recipe(variant)
  c.data.name = dataset
  c.data.train_split, c.data.eval_split = 'train', 'validation'
  c.data.clip_len, c.data.frame_interval = 32, 2
  c.data.mean, c.data.std = NORM_K
  c.data.eval_num_clips, c.data.eval_num_crops = 1, 1
  c.data.eval_short_side, c.data.eval_crop_size = 256, 224
  c.train.num_epochs, c.train.learning_rate = 30.0, 1e-3
  c.eval.every_steps = 5000
  c.eval.batch_size = 64
  return c


def finetune_recipe(dataset: str, variant: str = 'small') -> ml_collections.ConfigDict:
  """Fine-tuning from a Kinetics-400 checkpoint (Diving-48/HMDB-51/UCF-101): 32 x 4 frames,
  Norm-C, warm-up 1 epoch, validation 4 clips x centre crop at short side 256. The
  official test (4 clips x 3 crops at short side 224) is `--mode eval` with
  `--config.data.eval_num_crops=3 --config.data.eval_short_side=224`.
  The caller sets drop-path, decay, epochs and batch."""
  c = official_recipe(variant)
  c.data.name = dataset
  c.data.eval_split = 'test'  # the official test split is the validation split
  c.data.clip_len, c.data.frame_interval = 32, 4
  c.data.mean, c.data.std = NORM_C
  c.data.eval_num_clips, c.data.eval_num_crops = 4, 1
  c.data.eval_short_side, c.data.eval_crop_size = 256, 224
  c.train.learning_rate, c.train.warmup_epochs = 1e-3, 1.0
  c.init_from = f'checkpoints/{variant}_k400'  # e.g. converted with python -m dualformer_jax.convert
  c.eval.every_steps = 1000
  c.eval.batch_size = 16
  return c
