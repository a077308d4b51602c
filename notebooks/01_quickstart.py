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
# # DualFormer in JAX: quickstart
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/YOUR_GITHUB_USER/dualformer_jax/blob/main/notebooks/01_quickstart.ipynb)
#
# Build a model, load a checkpoint (one of ours, or an official PyTorch `.pth`), classify
# a video with the official multi-view protocol, look at the frames the model saw, and
# see where it looks (attention maps and Grad-CAM).
#
# Runs on a CPU in a minute with the settings below; on a Colab GPU or TPU, load an
# official `tiny`/`small`/`base` checkpoint and a Kinetics label file instead.

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
#
# Small CPU sizes by default. `CHECKPOINT` may be one of our checkpoint directories, a
# training workdir (its latest step; notebook 02 trains one), or an official `.pth`
# (`dualformer_tiny.pth`, ...: the variant and classes are read from the file). Left
# empty, a new model of `VARIANT` is made (random weights: the top-5 is then noise).

# %% tags=["parameters"]
CHECKPOINT = ''  # our checkpoint / workdir, or an official .pth; '' = a new model
VARIANT = 'nano'  # for a new model: 'nano' (8x64x64 clips) or 'tiny'/'small'/'base'
NUM_CLASSES = 8  # for a new model
VIDEO = ''  # any video file FFmpeg decodes; '' = a synthetic one (shapes drifting right)
LABELS = ''  # class names, one per line; '' = the synthetic classes or class_<i>
NUM_CLIPS = 2  # the official test protocol uses 4 clips ...
NUM_CROPS = 1  # ... and 1 or 3 crops
WORK_DIR = 'quickstart_files'  # files this notebook writes

# %%
import flax.linen as nn
import jax
import matplotlib.pyplot as plt
import numpy as np

from dualformer_jax import attention_maps
from dualformer_jax import convert
from dualformer_jax import flops
from dualformer_jax import model_checkpoint
from dualformer_jax import models
from dualformer_jax import predict
from dualformer_jax.data import synthetic
from dualformer_jax.data import video_io

os.makedirs(WORK_DIR, exist_ok=True)
print('JAX', jax.__version__, 'devices:', jax.devices())

# %% [markdown]
# ## A model and its weights
#
# `predict.load_checkpoint` reads both kinds of checkpoint. Without one we build a new
# model, and, to show the round trip, save it in both formats and load the official one
# back: `convert.to_pytorch` writes the official state dict (it loads with `strict=True`
# in the official PyTorch model), `convert.from_pytorch` reads one.

# %%
if CHECKPOINT:
  model, variables = predict.load_checkpoint(CHECKPOINT)
else:
  model = models.create_model(VARIANT, num_classes=NUM_CLASSES)
  clip_shape = (1, *model.video_size, 3)
  init = jax.jit(lambda rng: nn.unbox(model.init(rng, np.zeros(clip_shape, np.float32))))
  variables = init(jax.random.PRNGKey(0))  # unboxed: plain arrays, no sharding names
  model_checkpoint.save_model(f'{WORK_DIR}/new_{VARIANT}', variables, model, force=True)
  pth = f'{WORK_DIR}/new_{VARIANT}.pth'
  convert.save_state_dict(convert.to_pytorch(variables, model), pth)
  model, variables = predict.load_checkpoint(pth)  # an official-format file, converted
  print('wrote', f'{WORK_DIR}/new_{VARIANT}', 'and', pth)

counts = flops.count_parameters(model)
print(f'DualFormer: {model.num_classes} classes, clips of {model.video_size} '
      f'(T, H, W), {sum(counts.values()):,} parameters')

# %% [markdown]
# ## A video
#
# Any container and codec that FFmpeg (PyAV) decodes. Without one we write a synthetic
# clip from the project's motion dataset: a shape moving to the right over clutter.

# %%
if not VIDEO:
  VIDEO = f'{WORK_DIR}/moving_right.mp4'
  frames = synthetic.render_motion_video(synthetic.SYNTHETIC_CLASSES.index('right'),
                                         np.random.default_rng(0), num_frames=48, size=64)
  video_io.write_video(VIDEO, frames, fps=25)

if LABELS:
  class_names = predict.read_labels(LABELS)
elif model.num_classes == len(synthetic.SYNTHETIC_CLASSES):
  class_names = list(synthetic.SYNTHETIC_CLASSES)
else:
  class_names = [f'class_{i}' for i in range(model.num_classes)]
assert len(class_names) == model.num_classes, 'LABELS must name every class of the model'
labels_file = LABELS or f'{WORK_DIR}/labels.txt'
if not LABELS:
  with open(labels_file, 'w') as f:
    f.write('\n'.join(class_names) + '\n')

frames, fps = predict.read_frames(VIDEO)
print(f'{VIDEO}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]} '
      f'at {fps:.0f} fps')

# %% [markdown]
# ## Classify
#
# `NUM_CLIPS` uniformly spaced clips of the model's length (frames 2 apart), the shorter
# side resized to the model's size, a centre crop (or 3 crops); the softmax
# probabilities of all views are averaged.

# %%
settings = predict.default_view_settings(model, num_clips=NUM_CLIPS, num_crops=NUM_CROPS)
probabilities = predict.classify_video(model, variables, VIDEO, num_clips=NUM_CLIPS,
                                       num_crops=NUM_CROPS)
print(settings.describe())
print(predict.format_table(predict.top_k(probabilities, 5, class_names)))

# %% [markdown]
# The frames of each view, as the model saw them:

# %%
views = predict.video_views(predict.read_frames(VIDEO, settings.short_side)[0], settings)
shown = min(views.shape[1], 8)
fig, axes = plt.subplots(len(views), shown, figsize=(1.6 * shown, 1.7 * len(views)),
                         squeeze=False)
for v, view in enumerate(views):
  for t in range(shown):
    axes[v, t].imshow(view[t])
    axes[v, t].set_axis_off()
  axes[v, 0].set_title(f'view {v}', fontsize=8, loc='left')
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Where the model looks
#
# `attention_maps.last_global_attention`: the attention each space-time cell receives in
# the last global pyramid block (mean over heads and queries), and
# `attention_maps.grad_cam`: Grad-CAM over the last stage for the top class. Both are
# upsampled to the frames and scaled to [0, 1]; `overlay` blends them onto the frames.

# %%
clip = views[0]  # uint8 [T, H, W, 3]
attention = attention_maps.last_global_attention(model, variables, clip)
cam = attention_maps.grad_cam(model, variables, clip)  # for the predicted class
rows = {'frames': clip, 'attention': attention_maps.overlay(clip, attention),
        'Grad-CAM': attention_maps.overlay(clip, cam)}
fig, axes = plt.subplots(3, shown, figsize=(1.6 * shown, 5.2), squeeze=False)
for r, (name, images) in enumerate(rows.items()):
  for t in range(shown):
    axes[r, t].imshow(images[t])
    axes[r, t].set_axis_off()
  axes[r, 0].set_title(name, fontsize=8, loc='left')
plt.tight_layout()
plt.show()
print('attention map', attention.shape, 'Grad-CAM', cam.shape)

# %% [markdown]
# ## The same from the command line
#
# ```bash
# python -m dualformer_jax.predict --checkpoint CKPT --video FILE [--labels FILE] \
#     [--num_clips 4] [--num_crops 3] [--json]
# ```

# %%
checkpoint = CHECKPOINT or f'{WORK_DIR}/new_{VARIANT}'
package_root = os.path.dirname(os.path.dirname(os.path.abspath(dualformer_jax.__file__)))
result = subprocess.run(
    [sys.executable, '-m', 'dualformer_jax.predict', '--checkpoint', checkpoint,
     '--video', VIDEO, '--labels', labels_file, '--num_clips', str(NUM_CLIPS),
     '--num_crops', str(NUM_CROPS)],
    capture_output=True, text=True, check=False,
    env={**os.environ, 'PYTHONPATH': package_root})
print(result.stdout or result.stderr)
