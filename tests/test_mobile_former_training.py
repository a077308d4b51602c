"""Mobile-Former-3D through the training stack: the default config, pmap end to end on 2
devices (BatchNorm statistics over the global batch, checkpoint, resume), sharded jit,
our Kinetics-400 / SSv2 recipes against fact-sheet section 5.4, inflation through the
public entry points, the FLOPs report.

Runs use `mobile_former_3d_mini` (every block kind once, tiny widths) on a tiny synthetic
dataset, so each step compiles in seconds; the default run's own model is checked for
its values and a forward pass.
"""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from conftest import TEST_XLA_FLAGS
from dualformer_jax import attention_maps
from dualformer_jax import convert
from dualformer_jax import data
from dualformer_jax import flops
from dualformer_jax import model_checkpoint
from dualformer_jax import models
from dualformer_jax import optim
from dualformer_jax import predict
from dualformer_jax import train_lib
from dualformer_jax.data import transforms
from dualformer_jax.models.mobile_former import recipe
from dualformer_jax.models.mobile_former import variants
from configs import default as default_config

NUM_STEPS = 6
FAMILY_ARG = 'configs/default.py:mobile_former_3d'


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('mf_tiny_data')
  name = data.ensure_synthetic_dataset(data_dir, num_videos_per_class_train=4,
                                       num_videos_per_class_test=2, num_frames=16, size=32,
                                       num_workers=1)
  return str(data_dir), name


def mini_config(tiny_data, **overrides):
  """`configs/default.py:mobile_former_3d` on the tiny dataset with the mini model."""
  data_dir, name = tiny_data
  c = default_config.get_config('mobile_former_3d')
  c.model.update(variant='mobile_former_3d_mini', video_size=(4, 32, 32))
  c.data.update(name=name, data_dir=data_dir, synthetic=False, clip_len=4, short_side=32,
                crop_size=32, eval_short_side=32, eval_crop_size=32, eval_num_clips=1,
                num_workers=0)
  c.train.update(batch_size=8, num_steps=NUM_STEPS, warmup_epochs=0.5, log_every_steps=1)
  c.eval.update(batch_size=8, every_steps=0, at_end=False)
  c.checkpoint.update(every_steps=2, keep=5, async_save=False)
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    target = c
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


def read_metrics(workdir) -> list[dict]:
  return [json.loads(line) for line in
          (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()]


def train_losses(workdir) -> dict[int, float]:
  """Step -> loss (the last row of a step, so a resumed run's rows win)."""
  return {r['step']: r['loss'] for r in read_metrics(workdir) if 'loss' in r}


def checkpoint_at(workdir, step):
  return model_checkpoint.load_model(pathlib.Path(workdir) / 'checkpoints' / str(step))[1]


def assert_trees_close(a, b, rtol, atol=1e-6):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def single_device_run(tiny_data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('mf_single')
  train_lib.train_and_evaluate(mini_config(tiny_data, **{'mesh.num_devices': 1}), str(workdir))
  return workdir


# ---------------------------------------------------------------------- default config


def test_default_config_is_the_measured_run():
  c = default_config.get_config('mobile_former_3d')
  assert c.model.variant == 'mobile_former_3d_xs' and tuple(c.model.video_size) == (8, 64, 64)
  assert c.data.flip is False and c.data.synthetic
  assert (c.data.clip_len, c.data.crop_size, c.train.batch_size) == (8, 64, 16)
  # 180 steps of 16 of the 768 training videos: the budget (docs/mobile_former.md).
  assert c.train.num_epochs * 768 / c.train.batch_size == 180
  assert models.family_of_variant(c.model.variant).name == 'mobile_former_3d'
  model = train_lib.build_model(c, num_classes=8)
  logits = jax.eval_shape(lambda v, x: model.apply(v, x), convert.variable_shapes(model),
                          jax.ShapeDtypeStruct((2, 8, 64, 64, 3), jnp.float32))
  assert logits.shape == (2, 8)


def test_default_config_trains_and_evaluates(tiny_data, single_device_run, tmp_path):
  """The default config (mini model) trains, evaluates and writes a loadable checkpoint."""
  result = train_lib.train_and_evaluate(
      mini_config(tiny_data, **{'train.num_steps': 2, 'eval.at_end': True,
                                'mesh.num_devices': 1}), str(tmp_path))
  assert result['step'] == 2 and 0.0 <= result['top1'] <= 100.0
  losses = train_losses(single_device_run)
  assert sorted(losses) == list(range(1, NUM_STEPS + 1))
  assert all(np.isfinite(v) for v in losses.values())
  assert losses[NUM_STEPS] != pytest.approx(losses[1], rel=1e-3)  # it trained
  model, variables = model_checkpoint.load_model(tmp_path / 'checkpoints' / '2')
  assert models.family_of(model).name == 'mobile_former_3d' and model.video_size == (4, 32, 32)
  assert set(variables) == {'params', 'batch_stats'}

  # predict --grad_cam on the trained checkpoint: the family's map, saved.
  view = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  normalization = predict.model_normalization(model)
  written = predict.write_grad_cam(model, variables, view, normalization, 3,
                                   tmp_path / 'cam.npy')
  heat = np.load(tmp_path / 'cam.npy')
  assert written['shape'] == [4, 32, 32] and heat.dtype == np.float32
  expected = attention_maps.grad_cam(
      model, variables, np.asarray(transforms.normalize(view, *normalization)), 3)
  np.testing.assert_allclose(heat, expected, atol=1e-6)


# ------------------------------------------------------------------------- parallelism


def test_sharded_jit_equals_one_device(tiny_data, single_device_run, tmp_path):
  config = mini_config(tiny_data, **{'mesh.data': 2, 'mesh.fsdp': 2, 'mesh.tensor': 2,
                                     'checkpoint.every_steps': NUM_STEPS})
  train_lib.train_and_evaluate(config, str(tmp_path))
  expected, got = train_losses(single_device_run), train_losses(tmp_path)
  for step in expected:
    assert got[step] == pytest.approx(expected[step], rel=2e-4), step
  # Rounding differences grow through 6 AdamW steps (1e-4 on BatchNorm means); a
  # per-device (not averaged) statistic would be off by about 1e-2.
  # (Parameters are not compared: AdamW turns rounding-level gradient differences into
  # lr-sized steps on near-zero gradients.)
  assert_trees_close(checkpoint_at(tmp_path, NUM_STEPS)['batch_stats'],
                     checkpoint_at(single_device_run, NUM_STEPS)['batch_stats'],
                     rtol=2e-2, atol=1e-3)


def _launch(config, workdir):
  """`train.py` with `config` as flags, in a process with 2 simulated devices."""
  flat = [f'--config.{section}.{key}={value}'
          for section in ('model', 'data', 'train', 'eval', 'checkpoint')
          for key, value in config[section].items() if value is not None]
  env = {**os.environ, 'PYTHONPATH': str(REPO),
         'XLA_FLAGS': f'--xla_force_host_platform_device_count=2 {TEST_XLA_FLAGS}'}
  result = subprocess.run(
      [sys.executable, 'train.py', '--config', FAMILY_ARG, '--workdir', str(workdir),
       '--config.parallelism=pmap', *flat], cwd=REPO, env=env, capture_output=True,
      text=True, timeout=900)
  assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
  return result.stdout + result.stderr


def test_pmap_two_devices_end_to_end(tiny_data, single_device_run, tmp_path):
  """pmap over 2 devices (4 clips each): the same losses and BatchNorm statistics as one
  device with all 8 clips (statistics averaged over devices); after deleting the last
  checkpoints, a second run resumes at step 4 and repeats steps 5-6 exactly."""
  config = mini_config(tiny_data)
  out = _launch(config, tmp_path)
  assert 'pmap' in out and 'with 2 devices' in out
  expected, got = train_losses(single_device_run), train_losses(tmp_path)
  assert sorted(got) == list(range(1, NUM_STEPS + 1))
  for step in expected:
    assert got[step] == pytest.approx(expected[step], rel=2e-4), step
  final = checkpoint_at(tmp_path, NUM_STEPS)
  one_device = checkpoint_at(single_device_run, NUM_STEPS)
  assert_trees_close(final['batch_stats'], one_device['batch_stats'], rtol=2e-2, atol=1e-3)

  for step in (6,):
    shutil.rmtree(tmp_path / 'checkpoints' / str(step))
  out = _launch(config, tmp_path)
  assert 'Resumed from' in out and 'at step 4' in out, out[-2000:]
  resumed = train_losses(tmp_path)
  for step in (5, 6):
    assert resumed[step] == pytest.approx(got[step], rel=1e-6), step
  assert_trees_close(checkpoint_at(tmp_path, NUM_STEPS), final, rtol=1e-6)


# ---------------------------------------------------------------------------- recipes


def _load(file, arg):
  spec = importlib.util.spec_from_file_location(file[:-3], REPO / 'configs' / file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module, module.get_config(arg)


# Section 5.4 (our proposal): variant -> (frames, K400 frame stride, crop, dropout).
SECTION_5_4 = {'xs': (8, 8, 160, 0.2), 's': (8, 8, 160, 0.2), 'm': (16, 4, 160, 0.3),
               'l': (16, 4, 172, 0.3)}


@pytest.mark.parametrize('file', ['mobile_former_3d_k400.py', 'mobile_former_3d_ssv2.py'])
@pytest.mark.parametrize('variant', ['xs', 's', 'm', 'l'])
def test_recipes_follow_section_5_4(file, variant):
  module, c = _load(file, variant)
  assert f'python train.py --config configs/{file}:s' in module.__doc__
  assert 'OUR recipe' in module.__doc__ and '--mode eval' in module.__doc__
  frames, stride, crop, drop = SECTION_5_4[variant]
  assert c.model.variant == f'mobile_former_3d_{variant}'
  assert tuple(c.model.video_size) == (frames, crop, crop) and c.data.clip_len == frames
  assert c.data.crop_size == c.data.eval_crop_size == crop
  # AdamW, peak lr 1e-3 at batch 1024 scaled linearly, cosine to 1e-5 after 3-5 warm-up
  # epochs (from timm's 1e-4), label smoothing 0.1, mixup 0.2, decay 0.1, no drop path.
  assert c.train.optimizer == 'adamw' and (c.train.b1, c.train.b2) == (0.9, 0.999)
  assert c.train.learning_rate == pytest.approx(1e-3 * c.train.batch_size / 1024)
  assert c.train.min_lr == 1e-5 and 3 <= c.train.warmup_epochs <= 5
  assert c.train.warmup_start_factor == pytest.approx(0.1)
  assert c.train.label_smoothing == 0.1 and c.train.mixup_alpha == 0.2
  assert c.train.weight_decay == 0.1 and c.model.drop_path_rate == 0.0
  assert c.model.head_dropout_rate == drop
  assert c.data.random_resized_crop
  assert c.data.auto_augment == 'rand-m9-mstd0.5'  # RandAugment, one draw per clip
  if 'k400' in file:
    assert c.data.name == 'kinetics400_video' and c.data.sampling == 'dense'
    assert c.data.frame_interval == stride and c.data.flip
  else:  # TSN segments, no flips (labels such as "left to right")
    assert c.data.name == 'something_something_v2_video' and c.data.sampling == 'segment'
    assert not c.data.flip
  assert (c.data.eval_num_clips, c.data.eval_num_crops) == (1, 1)  # 1 x 1 view validation
  data.check_recipe_config(c)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import dualformer_jax.data.builders  # noqa: F401  pylint: disable=unused-import
  assert tfds.builder_cls(c.data.name).name == c.data.name


@pytest.mark.parametrize('variant', ['mobile_former_3d_xs', 'mobile_former_3d_s',
                                     'mobile_former_3d_m', 'mobile_former_3d_l',
                                     'mobile_former_3d_s_t1'])
def test_recipe_exempts_exactly_1d_parameters_and_biases_from_decay(variant):
  model = models.create_model(variant, num_classes=400)
  params = convert.variable_shapes(model)['params']
  multipliers = optim.param_multipliers(params, param_groups=recipe.NO_DECAY_PARAM_GROUPS,
                                        name_fn=models.family_of(model).param_name)
  for (path, leaf), (lr_mult, decay_mult) in zip(
      jax.tree_util.tree_leaves_with_path(params),
      jax.tree_util.tree_leaves(multipliers, is_leaf=lambda x: isinstance(x, tuple))):
    name = models.family_of(model).param_name(tuple(p.key for p in path))
    no_decay = leaf.ndim <= 1 or name.endswith('bias')
    assert (lr_mult, decay_mult) == (1.0, 0.0 if no_decay else 1.0), name


# -------------------------------------------------------- inflation and FLOPs report


def _image_state_dict(variant, num_classes, seed=0):
  image = models.create_model(variant, num_classes=num_classes)
  rng = np.random.default_rng(seed)
  shapes = convert.variable_shapes(image)

  def value(path, leaf):
    name = jax.tree_util.keystr(path)
    if "'var'" in name:
      return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
    return (0.2 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

  variables = jax.tree_util.tree_map_with_path(value, shapes)
  return image, variables, convert.to_pytorch(variables, image)


def test_inflate_command_and_static_clip_gives_image_logits(tmp_path):
  """5.7 b through the public path: an image MF-151M file -> `convert inflate` ->
  the video checkpoint; a clip of one repeated image gives the image logits."""
  image, variables, state_dict = _image_state_dict('mobile_former_151m', 10)
  path = tmp_path / 'mf151m.safetensors'
  convert.save_state_dict(state_dict, path)
  out = tmp_path / 'inflated'
  result = subprocess.run(
      [sys.executable, '-m', 'dualformer_jax.convert', 'inflate', '--input', str(path),
       '--output', str(out), '--variant', 'mobile_former_3d_xs', '--num_classes', '10',
       '--video_size', '3,64,64'], cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'PYTHONPATH': str(REPO)})
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'inflated 15 (centre rule)' in result.stdout and 'started from init 0' in result.stdout
  video, video_variables = model_checkpoint.load_model(out)
  assert models.family_of(video).name == 'mobile_former_3d' and video.video_size == (3, 64, 64)
  frame = jnp.asarray(np.random.default_rng(1).standard_normal((2, 64, 64, 3)), jnp.float32)
  image_logits = jax.jit(image.apply)(variables, frame)
  clip = jnp.repeat(frame[:, None], 3, axis=1)  # [2, 3, 64, 64, 3], a static clip
  video_logits = jax.jit(video.apply)(video_variables, clip)
  np.testing.assert_allclose(video_logits, image_logits, rtol=1e-4, atol=1e-4)

  # from_pytorch_2d with another class count: only the classifier starts from init.
  video400 = models.create_model('mobile_former_3d_xs', num_classes=400)
  inflated, report = convert.inflate_with_report(state_dict, video400)
  assert sorted(report.from_init) == ['classifier.classifier.1.bias',
                                      'classifier.classifier.1.weight']
  exported = convert.to_pytorch(inflated, video400)
  w = exported['features.1.conv1.0.weight']  # a depthwise kernel, (C, 1, 3, 3, 3)
  np.testing.assert_array_equal(w[:, :, 1], state_dict['features.1.conv1.0.weight'])
  assert not np.any(w[:, :, 0]) and not np.any(w[:, :, 2])


def test_flops_report_marks_our_figures_as_ours():
  text = flops.report('mobile_former_3d_s', None, 400)
  assert 'ours, not official' in text and 'official:' not in text
  ratio = float(text.rsplit('ratio ', 1)[1].rstrip(')'))
  assert abs(ratio - 1) < 0.03  # section 5.2's 0.915 GFLOPs at 8 x 160 x 160
  facts = variants.VIDEO_FACTS['mobile_former_3d_xs']
  assert flops.reference_input(facts) == (8, 160, 160)
  assert flops.reference_input(variants.IMAGE_FACTS['mobile_former_294m']) == (224, 224)
  assert 'official: 0.294 GFLOPs' in flops.report('mobile_former_294m', (224, 224), 1000)
