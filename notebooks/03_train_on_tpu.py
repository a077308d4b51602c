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
# # Train on TPU: meshes, sharding, launching, watching, resuming
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/YOUR_GITHUB_USER/dualformer_jax/blob/main/notebooks/03_train_on_tpu.ipynb)
#
# 1. The device mesh and the sharding rules, shown on a live model.
# 2. `dualformer-train` launched with a mesh, its metrics watched while it runs, a
#    preemption (SIGTERM) in the middle, and the resumed run.
# 3. The same on a Cloud TPU VM or pod.
#
# On a CPU runtime the notebook simulates 8 devices, so every mesh below works as it
# would on a TPU v2-8 / v3-8 / v4-8 (8 devices); it runs in a few minutes.

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
SIMULATED_CPU_DEVICES = 8  # a CPU runtime pretends to have this many devices
MESH = {'data': 2, 'fsdp': 2, 'tensor': 2}  # sizes of the mesh axes; product = devices
PARALLELISM = 'jit'  # 'jit' (sharded by the mesh) or 'pmap' (pure data parallelism)
VARIANT = 'nano'  # the model of the live demo and of the training run
BATCH_SIZE = 8  # global batch of the training run
NUM_STEPS = 4  # training steps of the run (it is stopped half-way, then resumed)
FILES = 'tpu_files'  # everything this notebook writes goes under here

# %% [markdown]
# JAX reads `XLA_FLAGS` once, when it starts: the simulated devices are set before the
# first `import jax`. (On a TPU or GPU runtime the flag changes nothing: JAX uses the
# accelerator's devices.)

# %%
if 'jax' not in sys.modules:
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             f' --xla_force_host_platform_device_count={SIMULATED_CPU_DEVICES}')

import functools
import json
import math
import signal
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax import data
from dualformer_jax import models
from dualformer_jax import sharding

os.makedirs(FILES, exist_ok=True)
print(f'{jax.device_count()} devices ({jax.default_backend()}):', jax.devices())
if math.prod(MESH.values()) != jax.device_count():
  print(f'MESH {MESH} needs {math.prod(MESH.values())} devices; using data parallelism '
        f'over all {jax.device_count()} instead.')
  MESH = {'data': jax.device_count(), 'fsdp': 1, 'tensor': 1}

# %% [markdown]
# ## 1. The mesh
#
# The devices are laid out as a 3-D grid with named axes:
#
# | axis | what is split over it | parameters |
# |---|---|---|
# | `data` | the batch | replicated |
# | `fsdp` | the batch | split along their `embed` axis (ZeRO-3 / fully sharded data parallel) |
# | `tensor` | the wide axes of the MLP and attention projections | split along `mlp` / `heads` / `qkv` / `kv` |
#
# A batch is split over `data x fsdp` devices. `fsdp` saves memory (each device holds a
# slice of every weight and of its optimizer state; the weights are gathered layer by
# layer); `tensor` splits the matrix multiplies themselves. For DualFormer Tiny to Base,
# pure `data` parallelism fits on any TPU; `fsdp` helps large batches of long clips.

# %%
mesh = sharding.create_mesh(MESH)
print(mesh)
print('device ids on the grid (data, fsdp, tensor):')
print(np.vectorize(lambda d: d.id)(mesh.devices))

# %% [markdown]
# ## 2. Logical axes and the rules
#
# Every parameter of the model names its axes (`embed`, `mlp`, `heads`, ...); the rules
# map these names to mesh axes (first match wins). Activations name theirs too
# (`act_batch`, ...), so the batch stays split over `data` and `fsdp` inside the model.

# %%
for logical, mesh_axes in sharding.DEFAULT_RULES:
  print(f'{logical:>12} -> {mesh_axes}')

# %% [markdown]
# ## 3. A live model on the mesh
#
# `sharding.init_sharded` runs the model's initializer under `jit` with the output
# shardings the rules give, so every device creates only its own slices: a model larger
# than one device's memory never exists whole on any device.

# %%
model = models.create_model(VARIANT, num_classes=8)
clip = jnp.zeros((1, *model.video_size, 3), jnp.float32)
variables, shardings = sharding.init_sharded(
    lambda rng: model.init(rng, clip, train=False), mesh, sharding.DEFAULT_RULES,
    jax.random.PRNGKey(0))
logical = nn.get_partition_spec(jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), clip,
                                                                  train=False)))

params = variables['params']
examples = {
    'patch_embed_0/proj/kernel': ('backbone', 'patch_embed_0', 'proj', 'kernel'),
    'block_0_0/attn/qkv/kernel': ('backbone', 'block_0_0', 'attn', 'qkv', 'kernel'),
    'block_0_1/attn/q/kernel': ('backbone', 'block_0_1', 'attn', 'q', 'kernel'),
    'block_0_0/mlp/fc1/kernel': ('backbone', 'block_0_0', 'mlp', 'fc1', 'kernel'),
    'block_0_0/mlp/fc2/kernel': ('backbone', 'block_0_0', 'mlp', 'fc2', 'kernel'),
    'block_0_0/norm1/scale': ('backbone', 'block_0_0', 'norm1', 'scale'),
    'head/fc_cls/kernel': ('head', 'fc_cls', 'kernel'),
}
for name, path in examples.items():
  array, axes = params, logical['params']
  for key in path:
    array, axes = array[key], axes[key]
  print(f'{name} {array.shape}\n    logical {tuple(axes)} -> mesh {tuple(array.sharding.spec)}: '
        f'{array.addressable_shards[0].data.shape} on each device')

total = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params))
per_device = {d: 0 for d in jax.devices()}
for x in jax.tree_util.tree_leaves(params):
  for shard in x.addressable_shards:
    per_device[shard.device] += shard.data.size * shard.data.dtype.itemsize
print(f'\nparameters: {total / 2**20:.2f} MiB in all; per device: '
      f'{max(per_device.values()) / 2**20:.2f} MiB')

# %% [markdown]
# A forward pass on a batch split over `data x fsdp`: each device works on its slice of
# the batch, with its slices of the weights, and we ask for the logits split the same
# way. `jit` inserts the collectives (all-gathers for `fsdp`, reductions for `tensor`)
# by itself.

# %%
num_shards = MESH['data'] * MESH['fsdp']
batch = jax.device_put(np.random.default_rng(0).normal(
    size=(num_shards, *model.video_size, 3)).astype(np.float32),
                       sharding.batch_sharding(mesh, 5))
print('input ', batch.shape, batch.sharding.spec)


@functools.partial(jax.jit, out_shardings=sharding.batch_sharding(mesh, 2))
def forward(variables, clips):
  return model.apply(variables, clips, train=False)


with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.DEFAULT_RULES):
  logits = forward(variables, batch)
print('logits', logits.shape, logits.sharding.spec, '| on one device:',
      logits.addressable_shards[0].data.shape)

# %% [markdown]
# ## 4. The same in a training config
#
# `dualformer-train` reads the mesh from `config.mesh` (`data`, `fsdp`, `tensor`; one of
# them may be `-1`: all remaining devices) and the strategy from `config.parallelism`:
#
# - `'jit'`: the state is sharded over the mesh by the rules above (the default);
# - `'pmap'`: one full copy of the state per device, the batch split over all devices,
#   gradients and BatchNorm statistics averaged with `pmean` (the classic recipe; the
#   mesh is ignored).
#
# Both give the same numbers as one device (the project's tests check it). Every other
# field of a config can be overridden on the command line in the same way:
# `--config.mesh.fsdp=2`, `--config.train.batch_size=128`, ...

# %%
from dualformer_jax.cli import train as train_cli

config = train_cli.load_config('configs/default.py')  # shipped with the package
print(config.mesh, 'parallelism:', config.parallelism)

# %% [markdown]
# ## 5. Launch, watch, preempt, resume
#
# A small synthetic dataset, then the training command line in the background on the
# mesh above (`dualformer-train`, run here as `python -m dualformer_jax.cli.train` with
# this kernel's Python; from any directory: `configs/default.py` is the shipped one). We
# watch `WORKDIR/metrics.jsonl` while it runs. Half-way we send SIGTERM, which is what
# a TPU VM receives before a preemption (or maintenance): the run saves a checkpoint and
# exits cleanly. Launched again with the same command, it resumes from that checkpoint,
# with the optimizer, RNG and input pipeline positioned exactly where they were.
#
# Here checkpoints are written only when the run stops or ends
# (`config.checkpoint.every_steps=0`); real runs also save every few hundred steps. A
# persistent compilation cache (`JAX_COMPILATION_CACHE_DIR`) spares the resumed run the
# compilation.

# %%
dataset = data.ensure_synthetic_dataset(os.path.join(FILES, 'data'),
                                        num_videos_per_class_train=2,
                                        num_videos_per_class_test=1, num_frames=16, size=64,
                                        num_workers=1)
WORKDIR = os.path.abspath(os.path.join(FILES, 'workdir'))
shutil.rmtree(WORKDIR, ignore_errors=True)

command = [
    sys.executable, '-m', 'dualformer_jax.cli.train', '--config', 'configs/default.py',
    '--workdir', WORKDIR,
    f'--config.model.variant={VARIANT}',
    f'--config.data.name={dataset}',
    f'--config.data.data_dir={os.path.abspath(os.path.join(FILES, "data"))}',
    '--config.data.synthetic=False',
    f'--config.train.batch_size={BATCH_SIZE}', f'--config.train.num_steps={NUM_STEPS}',
    '--config.train.warmup_epochs=0.5', '--config.train.log_every_steps=1',
    '--config.checkpoint.every_steps=0', f'--config.eval.batch_size={BATCH_SIZE}',
    f'--config.parallelism={PARALLELISM}',
    *[f'--config.mesh.{axis}={size}' for axis, size in MESH.items()],
]
env = dict(os.environ)
env.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.abspath(os.path.join(FILES, 'jax_cache')))
print('dualformer-train ' + ' '.join(command[3:]).replace(' --', ' \\\n    --'))


def watch(process, stop_after_step=None, timeout=600):
  """Prints new metrics rows while `process` runs; SIGTERM once `stop_after_step` is logged."""
  path, deadline = os.path.join(WORKDIR, 'metrics.jsonl'), time.time() + timeout
  seen = len(open(path).read().splitlines()) if os.path.exists(path) else 0
  while time.time() < deadline:
    running = process.poll() is None
    rows = open(path).read().splitlines() if os.path.exists(path) else []
    for line in rows[seen:]:
      print('metrics:', line)
      row = json.loads(line)
      if stop_after_step and row.get('step', 0) >= stop_after_step and running:
        print(f'--> sending SIGTERM (a preemption) after step {row["step"]}')
        process.send_signal(signal.SIGTERM)
        stop_after_step = None
    seen = len(rows)
    if not running:
      break
    time.sleep(0.2)
  try:
    out = process.communicate(timeout=max(deadline - time.time(), 60))[0]
  except subprocess.TimeoutExpired:
    process.kill()
    raise RuntimeError('dualformer-train did not finish in time:\n' +
                       process.communicate()[0][-3000:])
  if process.returncode != 0:
    raise RuntimeError(f'dualformer-train failed (exit code {process.returncode}):\n' + out[-3000:])
  print('--- end of the log:\n' + '\n'.join(out.splitlines()[-4:]))
  print('exit code', process.returncode, '| checkpoints:',
        sorted(int(s) for s in os.listdir(os.path.join(WORKDIR, 'checkpoints')) if s.isdigit()))
  return out


process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
first_log = watch(process, stop_after_step=NUM_STEPS // 2)

# %% [markdown]
# Launched again, the same command resumes:

# %%
process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
second_log = watch(process)
print([line for line in second_log.splitlines() if 'Resumed from' in line])

# %% [markdown]
# ## 6. On a Cloud TPU VM or pod
#
# Create a TPU VM (here a v4-8: one host, 4 chips; a pod slice such as `v4-32` has several
# hosts), install the package on every host, and run the *same* command on all of them:
# the training command line calls `jax.distributed.initialize()` on TPU pods, each host
# reads its own share of every batch, and the mesh spans all devices. (Over `ssh
# --command`, `~/.local/bin` is not on the PATH: `python3 -m dualformer_jax.cli.train` is
# `dualformer-train`.)
#
# ```bash
# gcloud compute tpus tpu-vm create dualformer --zone=us-central2-b \
#     --accelerator-type=v4-8 --version=tpu-ubuntu2204-base   # --spot: cheaper, preemptible
# gcloud compute tpus tpu-vm ssh dualformer --zone=us-central2-b --worker=all --command="
#     pip install 'dualformer-jax @ git+REPO_URL' 'jax[tpu]'"
# gcloud compute tpus tpu-vm ssh dualformer --zone=us-central2-b --worker=all --command="
#     nohup python3 -m dualformer_jax.cli.train --config configs/default.py \
#         --workdir ~/runs/default --config.mesh.data=-1 > train.log 2>&1 &"
# ```
#
# - **Data**: build the TFDS dataset once (`python -m dualformer_jax.data.build ...`, see
#   `docs/data.md`) where every host can read it, and pass `--config.data.data_dir`.
# - **Mesh**: `--config.mesh.data=-1` is plain data parallelism over all chips; e.g.
#   `--config.mesh.data=-1 --config.mesh.fsdp=4` shards the state over groups of 4.
#   `config.train.batch_size` is the global batch and must split over `data x fsdp`.
# - **Watching**: `tail -f ~/runs/default/metrics.jsonl` on host 0 (only process 0
#   writes metrics), or TensorBoard on `WORKDIR/tensorboard`; the log shows a progress
#   bar with steps/s, loss, learning rate and clips/s.
# - **Preemption**: a spot or preemptible VM gets SIGTERM first; the run saves and exits
#   as above. Keep `WORKDIR` on storage that outlives the VM (a persistent disk or a
#   mounted bucket), recreate the VM, and run the same command: it resumes from the
#   latest checkpoint that restores cleanly. Checkpoints are written every
#   `config.checkpoint.every_steps` steps, asynchronously.
