# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fine-tune DualFormer on your own videos
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/YOUR_GITHUB_USER/dualformer_jax/blob/main/notebooks/02_finetune_your_videos.ipynb)
#
# A folder of videos, one sub-folder per class, becomes a TFDS dataset; a pretrained
# checkpoint (an official `.pth` or one of ours) is fine-tuned on it with a new
# classifier; we plot loss and accuracy, classify a video with the result, and export it
# back to the official PyTorch format.
#
# The settings below run on a CPU in a couple of minutes on a small synthetic set. For
# real work: point `VIDEO_DIR` at your videos, `INIT_FROM` at an official Kinetics-400
# checkpoint (`VARIANT` to match, e.g. `tiny`), use the official 32x224x224 clips and
# a GPU or TPU runtime, and train for tens of epochs.

# %% [markdown]
# ## Install
#
# In Colab, set `REPO_URL` to this repository's git URL first: the cell then runs
# `pip install "dualformer-jax[notebooks,torch] @ git+REPO_URL"` (torch only where the
# runtime lacks it, plus JAX's build for a TPU or GPU runtime). In a clone of the
# repository, where `pip install -r requirements.txt` installed the package, it does
# nothing; otherwise it runs `pip install -e ..` from `notebooks/`.

# %%
REPO_URL = 'https://github.com/YOUR_GITHUB_USER/dualformer_jax.git'  # set this in Colab

import importlib
import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig

try:
  import dualformer_jax
except ImportError:
  in_clone = os.path.isfile('../pyproject.toml') and os.path.isdir('../dualformer_jax')
  extras = 'notebooks' if importlib.util.find_spec('torch') else 'notebooks,torch'
  package = [f'dualformer-jax[{extras}] @ git+{REPO_URL}'] if not in_clone else [
      '-e', f'..[{extras}]']
  if os.path.exists('/dev/accel0') or 'TPU_ACCELERATOR_TYPE' in os.environ:
    package.append('jax[tpu]')  # in the package's jax range
  elif shutil.which('nvidia-smi'):
    package.append('jax[cuda12]')
  subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', *package], check=True)
  importlib.invalidate_caches()
  if in_clone:  # an editable install is found through a .pth file: read it now
    site.addsitedir(sysconfig.get_path('purelib'))
  import dualformer_jax
print('dualformer_jax', dualformer_jax.__version__, 'from',
      os.path.dirname(dualformer_jax.__file__))

# %% [markdown]
# ## Settings

# %% tags=["parameters"]
VIDEO_DIR = ''  # VIDEO_DIR/<split>/<class>/<video>, splits 'train' and 'test'; '' = synthetic
DATASET_NAME = 'my_videos'  # read back as 'video_folder/my_videos'
FILES = 'finetune_files'  # everything this notebook writes goes under here
INIT_FROM = ''  # official .pth/.safetensors or our checkpoint; '' = a stand-in (see below)
VARIANT = 'nano'  # the architecture of INIT_FROM: 'tiny', 'small', 'base' (or 'nano')
CLIP_LEN = 8  # frames per clip (official models: 32)
FRAME_INTERVAL = 2
SHORT_SIDE = 64  # frames are stored with this shorter side (official: 256; eval 224)
CROP_SIZE = 64  # training / eval crop (official: 224)
FLIP = False  # horizontal flips (off here: the synthetic classes are directions)
BATCH_SIZE = 8  # global batch; must split over the devices
NUM_STEPS = 8  # optimizer steps (real data: tens of epochs)
LEARNING_RATE = 1e-3
BACKBONE_LR_MULT = 0.1  # the official fine-tuning recipes train the backbone 10x slower
EVAL_NUM_CLIPS = 1  # views per video when evaluating (official test: 4 clips)

# %%
import json

import flax.linen as nn
import jax
import matplotlib.pyplot as plt
import numpy as np

from dualformer_jax import convert
from dualformer_jax import data
from dualformer_jax import models
from dualformer_jax import predict
from dualformer_jax import train_lib
from dualformer_jax.cli import train as train_cli

os.makedirs(FILES, exist_ok=True)
DATA_DIR = os.path.join(FILES, 'tfds')
WORKDIR = os.path.join(FILES, 'workdir')
print('JAX', jax.__version__, 'devices:', jax.devices())

# %% [markdown]
# ## 1. The videos
#
# The layout is `VIDEO_DIR/<split>/<class name>/<video file>`; the classes are the
# sub-folders of `train/`, sorted by name. Any container FFmpeg reads works (mp4, avi,
# webm, mkv, ...). Without `VIDEO_DIR` we write a small synthetic set (the project's
# motion dataset: the class is the direction a shape moves in) and, to show that bad
# files are reported rather than lost, one empty "video".

# %%
if not VIDEO_DIR:
  VIDEO_DIR = os.path.join(FILES, 'videos')
  data.generate_synthetic_motion_videos(VIDEO_DIR, num_videos_per_class_train=3,
                                        num_videos_per_class_test=1, num_frames=16,
                                        size=SHORT_SIDE, num_workers=1)
  open(os.path.join(VIDEO_DIR, 'train', 'right', 'broken.mp4'), 'wb').close()

for split in sorted(os.listdir(VIDEO_DIR)):
  classes = sorted(os.listdir(os.path.join(VIDEO_DIR, split)))
  counts = {c: len(os.listdir(os.path.join(VIDEO_DIR, split, c))) for c in classes}
  print(f'{split}: {sum(counts.values())} files in {len(classes)} classes {counts}')

# %% [markdown]
# ## 2. Build the TFDS dataset
#
# Each video is decoded once into JPEG frames (shorter side `SHORT_SIDE`) in an
# ArrayRecord dataset; training then decodes only the frames it samples. The same from a
# shell: `python -m dualformer_jax.data.build video_folder --config '{"name": "my_videos",
# "short_side": 64}' --manual_dir VIDEO_DIR --data_dir DATA_DIR` (see `docs/data.md`).

# %%
data.build_dataset('video_folder', manual_dir=VIDEO_DIR, data_dir=DATA_DIR,
                   config=data.VideoConfig(name=DATASET_NAME, short_side=SHORT_SIDE))
DATASET = f'video_folder/{DATASET_NAME}'
info = data.dataset_info(DATASET, DATA_DIR)
print(DATASET, '| classes:', info.class_names, '| videos per split:', info.splits)

with open(os.path.join(DATA_DIR, 'video_folder', DATASET_NAME, '1.0.0',
                       'skipped_videos.json')) as f:
  skipped = json.load(f)
print('skipped:', json.dumps(skipped, indent=1)[:600])

# %% [markdown]
# ## 3. The checkpoint to start from
#
# `INIT_FROM` is an official checkpoint (`.pth` or `.safetensors`: the backbone is
# converted, and a classifier for another number of classes is replaced by a new one) or
# one of our checkpoint directories. Without one we make a stand-in: a new DualFormer
# with a 400-class head, saved in the official format, exactly as a Kinetics-400
# checkpoint would be. (Its weights are random, so do not expect accuracy from it.)

# %%
if not INIT_FROM:
  stand_in = models.create_model(VARIANT, num_classes=400)
  clip = np.zeros((1, *stand_in.video_size, 3), np.float32)
  init = jax.jit(lambda rng: nn.unbox(stand_in.init(rng, clip)))
  INIT_FROM = os.path.join(FILES, f'stand_in_{VARIANT}_k400.pth')
  convert.save_state_dict(convert.to_pytorch(init(jax.random.PRNGKey(0)), stand_in), INIT_FROM)
print('fine-tuning from', INIT_FROM)

# %% [markdown]
# ## 4. The training config
#
# Training is driven by an `ml_collections` config (`configs/default.py` here, shipped
# with the package; every field is listed in `dualformer_jax/config_base.py`). The same
# run from a shell: `dualformer-train --config configs/default.py --workdir WORKDIR
# --config.init_from=... --config.data.name=video_folder/my_videos ...`.

# %%
config = train_cli.load_config('configs/default.py')  # the shipped copy, from any directory
config.init_from = INIT_FROM
config.model.variant = VARIANT
config.data.update(
    name=DATASET, data_dir=DATA_DIR, synthetic=False, train_split='train', eval_split='test',
    clip_len=CLIP_LEN, frame_interval=FRAME_INTERVAL, crop_size=CROP_SIZE, short_side=None,
    flip=FLIP, eval_num_clips=EVAL_NUM_CLIPS, eval_short_side=SHORT_SIDE,
    eval_crop_size=CROP_SIZE)
config.train.update(batch_size=BATCH_SIZE, num_steps=NUM_STEPS, learning_rate=LEARNING_RATE,
                    backbone_lr_mult=BACKBONE_LR_MULT, warmup_epochs=0.5, log_every_steps=1)
config.eval.update(every_steps=max(1, NUM_STEPS // 2), batch_size=BATCH_SIZE)
config.checkpoint.update(every_steps=0)  # saved at each evaluation and at the end
print(config.data, config.train, sep='\n')

# %% [markdown]
# ## 5. Fine-tune
#
# `train_and_evaluate` builds the model (the classifier sized for this dataset), loads
# `INIT_FROM`, trains, evaluates on the test split, and writes `WORKDIR/checkpoints/<step>/`
# and `WORKDIR/metrics.jsonl`. Run it again and it resumes from the latest checkpoint
# (delete `WORKDIR` to start over).

# %%
final = train_lib.train_and_evaluate(config, WORKDIR)
print(final)

# %% [markdown]
# ## 6. Loss and accuracy
#
# `metrics.jsonl` holds one JSON object per line: train rows (`step`, `loss`, `lr`,
# `grad_norm`, `accuracy` of the batch, `clips_per_sec`) and eval rows (`top1`, `top5`,
# `mean_class_accuracy`). TensorBoard reads `WORKDIR/tensorboard`.

# %%
with open(os.path.join(WORKDIR, 'metrics.jsonl')) as f:
  rows = [json.loads(line) for line in f]
train_rows = [r for r in rows if 'loss' in r]
eval_rows = [r for r in rows if 'top1' in r]

fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
ax_loss.plot([r['step'] for r in train_rows], [r['loss'] for r in train_rows], '.-')
ax_loss.set(xlabel='step', ylabel='loss', title='training loss')
ax_acc.plot([r['step'] for r in train_rows], [100 * r['accuracy'] for r in train_rows], '.-',
            label='train batch')
ax_acc.plot([r['step'] for r in eval_rows], [r['top1'] for r in eval_rows], 'o-',
            label='test top-1')
ax_acc.set(xlabel='step', ylabel='accuracy (%)', title='accuracy', ylim=(-5, 105))
ax_acc.legend()
plt.tight_layout()
plt.show()
print(f'{len(train_rows)} train rows, eval: {eval_rows}')

# %% [markdown]
# ## 7. Use the fine-tuned model
#
# `predict.load_checkpoint(WORKDIR)` reads the latest step of the run.

# %%
model, variables = predict.load_checkpoint(WORKDIR)
test_class = info.class_names[0]
test_dir = os.path.join(VIDEO_DIR, 'test', test_class)
video = os.path.join(test_dir, sorted(os.listdir(test_dir))[0])
probabilities = predict.classify_video(model, variables, video, num_clips=EVAL_NUM_CLIPS,
                                       short_side=SHORT_SIDE, crop_size=CROP_SIZE,
                                       clip_len=CLIP_LEN, frame_interval=FRAME_INTERVAL)
print(f'{video} (true class: {test_class})')
print(predict.format_table(predict.top_k(probabilities, 5, info.class_names)))

# %% [markdown]
# ## 8. Export to PyTorch
#
# The official state dict, every key and shape as the official model has them (loads
# with `strict=True`). From a shell:
# `python -m dualformer_jax.convert to-pytorch --input WORKDIR/checkpoints/<step> --output finetuned.pth`.

# %%
exported = os.path.join(FILES, f'dualformer_{VARIANT}_{DATASET_NAME}.pth')
convert.save_state_dict(convert.to_pytorch(variables, model), exported,
                        meta={'classes': ','.join(info.class_names)})

import torch

state_dict = torch.load(exported, map_location='cpu')['state_dict']
print(f'{exported}: {len(state_dict)} tensors, classifier',
      tuple(state_dict['cls_head.fc_cls.weight'].shape))
# Read back: the same predictions.
reloaded, reloaded_variables = predict.load_checkpoint(exported)
again = predict.classify_video(reloaded, reloaded_variables, video, num_clips=EVAL_NUM_CLIPS,
                               short_side=SHORT_SIDE, crop_size=CROP_SIZE, clip_len=CLIP_LEN,
                               frame_interval=FRAME_INTERVAL)
print('round trip max |difference|:', float(np.abs(again - probabilities).max()))
