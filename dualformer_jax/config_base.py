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

  # Optimization: AdamW, linear warm-up then cosine to zero.
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
  c.train.backbone_lr_mult = 1.0  # official fine-tuning recipes use 0.1
  c.train.grad_clip_norm = 0.0  # 0: no clipping
  c.train.label_smoothing = 0.0
  c.train.log_every_steps = 10

  # Evaluation during training (full eval split, multi-view).
  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 0  # 0: only at the end
  c.eval.batch_size = 8  # global number of videos per eval step
  c.eval.at_end = True

  # Checkpoints (orbax) under WORKDIR/checkpoints.
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 500
  c.checkpoint.keep = 3  # latest checkpoints kept (the best by eval top-1 is kept too)
  c.checkpoint.async_save = True

  # Parallelism: 'jit' (sharded by logical axis rules over the mesh) or 'pmap'.
  c.parallelism = 'jit'
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1: all remaining devices
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.mesh.num_devices = 0  # use the first N devices (0: all)
  return c


def kinetics_recipe(variant: str) -> ml_collections.ConfigDict:
  """The official Kinetics-400 recipe (ARCHITECTURE.md section 9) for `variant`."""
  c = base_config()
  c.model.variant = variant
  c.model.drop_path_rate = 0.1
  c.model.head_dropout_rate = 0.5
  c.data.name = 'kinetics400_video'
  c.data.train_split, c.data.eval_split = 'train', 'validation'
  c.data.clip_len, c.data.frame_interval = 32, 2
  c.data.short_side, c.data.crop_size = 256, 224
  c.data.area_range, c.data.aspect_range = (0.08, 1.0), (3 / 4, 4 / 3)
  c.data.flip = True
  # Validation during training: 1 clip, short side 256, centre crop 224. The official
  # test protocol is 4 clips at short side 224: see the configs' docstrings.
  c.data.eval_num_clips, c.data.eval_num_crops = 1, 1
  c.data.eval_short_side, c.data.eval_crop_size = 256, 224
  c.train.batch_size = 64  # 8 clips x 8 GPUs in the official runs
  c.train.num_epochs, c.train.warmup_epochs = 30.0, 3.0
  c.train.learning_rate, c.train.weight_decay = 1e-3, 0.02
  c.train.b1, c.train.b2 = 0.9, 0.999
  c.train.backbone_lr_mult = 0.1  # the backbone starts from pretrained weights
  c.eval.every_steps = 5000
  c.eval.batch_size = 64
  c.checkpoint.every_steps = 1000
  return c


def finetune_recipe(dataset: str, frame_interval: int = 2) -> ml_collections.ConfigDict:
  """Small fine-tuned from Kinetics-400 (the official Diving-48/HMDB-51/UCF-101 recipes:
  warm-up 1 epoch, test 4 clips x 3 crops). Epochs and learning rate are not in the
  official facts; we keep the Kinetics values."""
  c = kinetics_recipe('small')
  c.data.name = dataset
  c.data.frame_interval = frame_interval
  c.data.eval_split = 'test'
  c.data.eval_num_clips, c.data.eval_num_crops = 4, 3
  c.data.eval_short_side, c.data.eval_crop_size = 224, 224
  c.train.warmup_epochs = 1.0
  c.init_from = 'checkpoints/small_k400'  # e.g. converted with python -m dualformer_jax.convert
  c.eval.every_steps = 1000
  c.eval.batch_size = 16
  return c
