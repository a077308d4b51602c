"""Training: parallel steps agree, checkpoints survive preemption, evaluation counts.

A tiny synthetic dataset is built once; runs use a two-stage DualFormer-nano for a few
steps. Subprocess runs share a persistent compilation cache (see conftest.py).
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from conftest import TEST_XLA_FLAGS
from dualformer_jax import checkpointing
from dualformer_jax import convert
from dualformer_jax import data
from dualformer_jax import models
from dualformer_jax import steps
from dualformer_jax import train_lib
from configs import default as default_config

NUM_STEPS = 6


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tiny_data')
  name = data.ensure_synthetic_dataset(data_dir, num_videos_per_class_train=4,
                                       num_videos_per_class_test=2, num_frames=16, size=32,
                                       num_workers=1)
  return str(data_dir), name


def tiny_config(tiny_data, **overrides):
  data_dir, name = tiny_data
  c = default_config.get_config()
  c.model.depths = (2, 2, 0, 0)  # both attentions and BatchNorm, half the compile time
  c.data.update(name=name, data_dir=data_dir, synthetic=False, clip_len=4, short_side=32,
                eval_num_clips=2, num_workers=0)
  c.train.update(batch_size=8, num_steps=NUM_STEPS, warmup_epochs=0.5, log_every_steps=1)
  c.eval.update(batch_size=8, at_end=False)
  c.checkpoint.update(every_steps=2, async_save=True)
  for key, value in overrides.items():
    target = c
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


def read_metrics(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  return [json.loads(line) for line in path.read_text().splitlines()]


def train_losses(workdir) -> dict[int, float]:
  return {r['step']: r['loss'] for r in read_metrics(workdir) if 'loss' in r}


def final_params(workdir):
  from dualformer_jax import model_checkpoint  # pylint: disable=g-import-not-at-top
  directory = pathlib.Path(workdir) / 'checkpoints'
  last = max(int(p.name) for p in directory.iterdir() if p.name.isdigit())
  return last, model_checkpoint.load_model(directory / str(last))[1]


def config_flags(config) -> list[str]:
  """The config as `--config.a.b=value` overrides of configs/default.py."""
  flat = []
  for section in ('model', 'data', 'train', 'eval', 'checkpoint', 'mesh'):
    for key, value in config[section].items():
      if value is not None:
        flat.append(f'--config.{section}.{key}={value}')
  flat.append(f'--config.parallelism={config.parallelism}')
  return flat


def launch(config, workdir, *extra, devices=8, env=None) -> subprocess.Popen:
  environment = {**os.environ, 'PYTHONPATH': str(REPO),
                 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices} {TEST_XLA_FLAGS}',
                 **(env or {})}
  return subprocess.Popen(
      [sys.executable, 'train.py', '--config', 'configs/default.py', '--workdir', str(workdir),
       *config_flags(config), *extra], cwd=REPO, env=environment,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=900) -> str:
  out, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, out[-3000:]
  return out


# ---------------------------------------------------------------- parallel equivalence


@pytest.fixture(scope='module')
def single_device_run(tiny_data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('single')
  # Profiling steps 2-3 must change nothing (the sharded runs compare against this one).
  config = tiny_config(tiny_data, **{'mesh.num_devices': 1, 'profile.start_step': 1,
                                     'profile.num_steps': 2})
  train_lib.train_and_evaluate(config, str(workdir))
  return workdir


def test_profile_traces_the_configured_steps(single_device_run):
  traces = list(pathlib.Path(single_device_run, 'profile').glob('plugins/profile/*/*.xplane.pb'))
  assert len(traces) == 1, traces
  trace = jax.profiler.ProfileData.from_file(str(traces[0]))
  steps = [event for plane in trace.planes for line in plane.lines for event in line.events
           if event.name == 'train']
  assert len(steps) == 2  # one StepTraceAnnotation per traced step
  assert all(event.duration_ns > 0 for event in steps)


@pytest.mark.parametrize('parallelism, mesh', [
    ('jit', dict(data=2, fsdp=2, tensor=2)),
    ('pmap', {}),
])
def test_sharded_and_pmapped_steps_match_one_device(tiny_data, single_device_run, tmp_path,
                                                    parallelism, mesh):
  overrides = {'parallelism': parallelism, 'checkpoint.every_steps': 0}
  overrides.update({f'mesh.{k}': v for k, v in mesh.items()})
  result = train_lib.train_and_evaluate(tiny_config(tiny_data, **overrides), str(tmp_path))
  assert result['step'] == NUM_STEPS
  expected, got = train_losses(single_device_run), train_losses(tmp_path)
  assert sorted(got) == list(range(1, NUM_STEPS + 1))
  for step in expected:
    assert got[step] == pytest.approx(expected[step], rel=2e-4), step
  assert expected[1] != pytest.approx(expected[NUM_STEPS], rel=1e-3)  # it trained


# ------------------------------------------------------------------------ checkpoints


def test_checkpoint_restores_on_another_mesh(tiny_data, single_device_run):
  """Saved on 1 device, restored onto a 2x2x2 mesh: same values, new layout."""
  config = tiny_config(tiny_data, **{'mesh.data': 2, 'mesh.fsdp': 2, 'mesh.tensor': 2})
  s = train_lib.setup(config)
  state = s.runtime.init_state(jax.random.PRNGKey(1))
  iterator = train_lib.train_iterator(config, s.dataset)
  checkpointer = checkpointing.TrainCheckpointer(single_device_run / 'checkpoints')
  restored, step = checkpointer.restore(s.runtime.abstract_state(state), iterator)
  checkpointer.close()
  assert step == NUM_STEPS and int(restored.step) == NUM_STEPS
  fc1 = restored.params['backbone']['block_0_0']['mlp']['fc1']['kernel']
  assert len(fc1.sharding.device_set) == 8
  assert fc1.addressable_shards[0].data.shape == (fc1.shape[0] // 2, fc1.shape[1] // 2)
  _, saved = final_params(single_device_run)
  np.testing.assert_array_equal(np.asarray(fc1),
                                saved['params']['backbone']['block_0_0']['mlp']['fc1']['kernel'])


def test_sigterm_saves_and_resume_matches_uninterrupted_run(tiny_data, tmp_path):
  config = tiny_config(tiny_data, **{'checkpoint.every_steps': 0})
  finish(launch(config, tmp_path / 'straight'))

  interrupted = tmp_path / 'interrupted'
  process = launch(config, interrupted)
  deadline = time.time() + 600
  while time.time() < deadline and process.poll() is None:
    rows = read_metrics(interrupted) if (interrupted / 'metrics.jsonl').exists() else []
    if any(r.get('step', 0) >= 2 for r in rows):
      process.send_signal(signal.SIGTERM)
      break
    time.sleep(0.05)
  out = finish(process)
  assert 'SIGTERM received' in out, out[-2000:]
  stopped_at, _ = final_params(interrupted)
  assert 2 <= stopped_at < NUM_STEPS, f'stopped at {stopped_at}'

  out = finish(launch(config, interrupted))
  assert f'Resumed from' in out and f'at step {stopped_at}' in out
  straight, resumed = train_losses(tmp_path / 'straight'), train_losses(interrupted)
  for step in range(stopped_at + 1, NUM_STEPS + 1):  # the same batches after resuming
    assert resumed[step] == pytest.approx(straight[step], rel=1e-6), step
  (step_a, a), (step_b, b) = final_params(tmp_path / 'straight'), final_params(interrupted)
  assert step_a == step_b == NUM_STEPS
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_sigkill_during_save_resumes_from_last_complete_checkpoint(tiny_data, tmp_path):
  config = tiny_config(tiny_data, **{'checkpoint.every_steps': 1, 'train.num_steps': 12})
  directory = tmp_path / 'checkpoints'
  process = launch(config, tmp_path)
  killed_during_save = False
  deadline = time.time() + 600
  while time.time() < deadline and process.poll() is None:
    names = os.listdir(directory) if directory.exists() else []
    if any('tmp' in n for n in names) and any(n.isdigit() for n in names):
      process.kill()  # SIGKILL while a save is being written
      killed_during_save = True
      break
    time.sleep(0.001)
  out, _ = process.communicate(timeout=60)
  if not killed_during_save:
    assert process.returncode == 0, out[-3000:]
    pytest.skip('every save finished before the poll saw it; nothing was interrupted')
  complete = sorted(int(n) for n in os.listdir(directory) if n.isdigit())
  partial = [n for n in os.listdir(directory) if 'tmp' in n]
  assert partial, 'the interrupted save left a partial directory'

  out = finish(launch(config, tmp_path))
  assert 'incomplete checkpoint' in out
  assert f'at step {complete[-1]}' in out
  last, _ = final_params(tmp_path)
  assert last == 12
  assert not [n for n in os.listdir(directory) if 'tmp' in n]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path):
  config = tiny_config(tiny_data, **{'train.learning_rate': 1e12, 'train.warmup_epochs': 0.0,
                                     'checkpoint.every_steps': 1, 'mesh.num_devices': 1})
  with pytest.raises(train_lib.NonFiniteLossError, match=r'at step (\d+)') as error:
    train_lib.train_and_evaluate(config, str(tmp_path))
  bad_step = int(re.search(r'at step (\d+)', str(error.value)).group(1))
  saved = sorted(int(n) for n in os.listdir(tmp_path / 'checkpoints') if n.isdigit())
  assert saved and max(saved) < bad_step
  _, variables = final_params(tmp_path)
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(variables))


# ---------------------------------------------------------------------- several hosts


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tiny_data, tmp_path):
  config = tiny_config(tiny_data, **{'checkpoint.every_steps': 0, 'train.num_steps': 3})
  finish(launch(config, tmp_path / 'one', devices=8))
  port = _free_port()
  workers = [launch(config, tmp_path / 'two', '--coordinator_address', f'127.0.0.1:{port}',
                    '--num_processes', '2', '--process_id', str(i), devices=4)
             for i in range(2)]
  outs = [finish(w) for w in workers]
  assert 'with 8 devices' in outs[0]
  one, two = train_losses(tmp_path / 'one'), train_losses(tmp_path / 'two')
  assert sorted(two) == [1, 2, 3]
  for step in one:
    assert two[step] == pytest.approx(one[step], rel=2e-4), step


# ------------------------------------------------------------ pretrained and evaluation


def test_init_from_official_checkpoint_reinitializes_only_the_head(golden_state_dict, tmp_path,
                                                                   caplog):
  path = tmp_path / 'official.safetensors'
  convert.save_state_dict(golden_state_dict, path)
  model = models.create_model('mini', num_classes=8)
  variables = train_lib.load_pretrained(str(path), model, jax.random.PRNGKey(3))
  exported = convert.to_pytorch(variables, model)
  for key, value in golden_state_dict.items():
    if key.startswith('backbone.'):
      np.testing.assert_array_equal(exported[key], value)
  assert exported['cls_head.fc_cls.weight'].shape == (8, 64)
  assert 're-initializing cls_head.fc_cls' in caplog.text


def test_eval_step_averages_views_and_counts_classes():
  """A linear stand-in model whose logits we know: checks the protocol's arithmetic."""

  class Probe:
    def apply(self, variables, clips, train):  # logits = mean pixel value per channel
      del variables, train
      return jnp.mean(clips, axis=(1, 2, 3))  # [b * v, 3]

  eval_step = steps.make_eval_step(Probe(), num_classes=3)
  video = np.zeros((2, 2, 1, 1, 1, 3), np.uint8)  # [b, views, t, h, w, 3]
  video[0, 0, ..., 0] = 255  # video 0: view 0 says class 0, view 1 says class 2 weakly
  video[0, 1, ..., 2] = 140
  video[1, :, ..., 1] = 255  # video 1: class 1 (padding: masked out)
  sums = steps.summarize_eval(jax.device_get(eval_step({}, {
      'video': video, 'label': np.array([0, 2]), 'mask': np.array([True, False])})))
  assert sums == {'top1': 100.0, 'top5': 100.0, 'mean_class_accuracy': 100.0, 'num_videos': 1}
  totals = {'correct1': 3.0, 'correct5': 4.0, 'count': 4.0,
            'class_correct': np.array([2.0, 1.0, 0.0]), 'class_count': np.array([2.0, 1.0, 1.0])}
  assert steps.summarize_eval(totals) == {'top1': 75.0, 'top5': 100.0,
                                          'mean_class_accuracy': pytest.approx(200 / 3),
                                          'num_videos': 4}


def test_command_line_rejects_unknown_config_key(tmp_path):
  result = subprocess.run(
      [sys.executable, 'train.py', '--config', 'configs/default.py', '--workdir',
       str(tmp_path), '--config.train.lrr=0.1'], cwd=REPO, capture_output=True, text=True,
      timeout=300, env={**os.environ, 'PYTHONPATH': str(REPO)})
  assert result.returncode != 0
  assert 'lrr' in result.stderr
