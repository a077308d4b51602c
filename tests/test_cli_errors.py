"""Every command line answers a user's mistake with one `error: ...` line, no traceback.

Each test runs the real command in a subprocess; each fails on cheap checks, before
anything is compiled.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

TRAIN = [sys.executable, 'train.py']
PREDICT = [sys.executable, '-m', 'dualformer_jax.predict']
CONVERT = [sys.executable, '-m', 'dualformer_jax.convert']
BUILD = [sys.executable, '-m', 'dualformer_jax.data.build']
FLOPS = [sys.executable, '-m', 'dualformer_jax.flops']


def fails(command, *words, env=None):
  """Runs `command`; checks exit != 0, one error line naming `words`, no traceback."""
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'PYTHONPATH': str(REPO), **(env or {})})
  assert result.returncode != 0, result.stdout + result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1, result.stderr
  for word in words:
    assert word in errors[0], errors[0]
  return errors[0]


def train(tmp_path, *flags):
  return TRAIN + ['--config', 'configs/default.py', '--workdir', str(tmp_path / 'w'), *flags]


@pytest.fixture(scope='module')
def mini_safetensors(tmp_path_factory):
  """An official-layout state dict of `mini` (4 classes), zeros, as .safetensors."""
  import jax  # pylint: disable=g-import-not-at-top
  from dualformer_jax import convert, models  # pylint: disable=g-import-not-at-top
  model = models.create_model('mini', num_classes=4)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             np.zeros((1, *model.video_size, 3), np.float32),
                                             train=False))
  variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  path = tmp_path_factory.mktemp('ckpt') / 'mini.safetensors'
  convert.save_state_dict(convert.to_pytorch(variables, model), str(path))
  return str(path)


def test_config_file_not_found(tmp_path):
  fails(TRAIN + ['--config', 'configs/nope.py', '--workdir', str(tmp_path)],
        'config file not found', 'configs/nope.py', 'configs/default.py')


def test_config_key_not_found_suggests_closest(tmp_path):
  fails(train(tmp_path, '--config.train.batch_sise=4'), 'train.batch_sise', 'does not exist',
        'did you mean --config.train.batch_size')


@pytest.mark.parametrize('key, meant', [
    ('train.lrr', 'train.learning_rate'), ('train.lr', 'train.learning_rate'),
    ('train.wd', 'train.weight_decay'), ('train.bacth_size', 'train.batch_size'),
    ('train.learning_rat', 'train.learning_rate'), ('eval.bs', 'eval.batch_size')])
def test_config_key_suggestion_by_initials_prefix_or_typo(tmp_path, key, meant):
  fails(train(tmp_path, f'--config.{key}=1'), f'config.{key} does not exist',
        f'did you mean --config.{meant}?')


def test_config_value_of_wrong_type(tmp_path):
  fails(train(tmp_path, '--config.train.num_steps=many'), 'num_steps', 'many', 'int')


def test_missing_required_flag():
  fails(TRAIN + ['--config', 'configs/default.py'], '--workdir')


def test_unknown_variant_lists_choices(tmp_path):
  fails(train(tmp_path, '--config.model.variant=tinyy'), "'tinyy'", "did you mean 'tiny'",
        'nano')
  fails(CONVERT + ['to-flax', '--input', 'x.pth', '--variant', 'tinyy', '--output',
                   str(tmp_path / 'o')], "did you mean 'tiny'")


def test_dataset_not_built_gives_build_command(tmp_path):
  fails(train(tmp_path, '--config.data.synthetic=False', '--config.data.name=video_folder',
              f'--config.data.data_dir={tmp_path / "tfds"}'),
        'not built', 'python -m dualformer_jax.data.build video_folder')


def test_batch_that_does_not_split_over_devices(tmp_path):
  from dualformer_jax import data  # pylint: disable=g-import-not-at-top
  name = data.ensure_synthetic_dataset(tmp_path / 'd', num_videos_per_class_train=1,
                                       num_videos_per_class_test=1, num_frames=8, size=32,
                                       num_workers=1)
  fails(train(tmp_path, '--config.data.synthetic=False', f'--config.data.name={name}',
              f'--config.data.data_dir={tmp_path / "d"}', '--config.train.batch_size=7'),
        'batch_size=7', 'split evenly',
        env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})


def test_checkpoint_missing_empty_or_corrupt(tmp_path):
  video = tmp_path / 'v.mp4'
  video.write_bytes(b'0')
  fails(PREDICT + ['--checkpoint', str(tmp_path / 'nope'), '--video', str(video)],
        'checkpoint not found', 'nope')
  (tmp_path / 'empty').mkdir()
  fails(PREDICT + ['--checkpoint', str(tmp_path / 'empty'), '--video', str(video)],
        'no checkpoint in', 'checkpoints/<step>')
  corrupt = tmp_path / 'corrupt.safetensors'
  corrupt.write_bytes(b'not a checkpoint')
  fails(PREDICT + ['--checkpoint', str(corrupt), '--video', str(video)], 'corrupt.safetensors',
        'cannot read checkpoint')


def test_corrupt_or_empty_pth_given_to_convert(tmp_path):
  pytest.importorskip('torch')
  for name, content in (('empty.pth', b''), ('corrupt.pth', b'garbage')):
    (tmp_path / name).write_bytes(content)
    fails(CONVERT + ['to-flax', '--input', str(tmp_path / name), '--variant', 'tiny',
                     '--output', str(tmp_path / 'o')], 'cannot read checkpoint', name)


def test_our_checkpoint_missing_empty_or_damaged(tmp_path):
  out = ['--output', str(tmp_path / 'o.pth')]
  fails(CONVERT + ['to-pytorch', '--input', str(tmp_path / 'nope'), *out],
        'checkpoint not found', 'nope')
  (tmp_path / 'empty').mkdir()
  fails(CONVERT + ['to-pytorch', '--input', str(tmp_path / 'empty'), *out],
        'not a dualformer_jax checkpoint', 'params')
  for item in ('params', 'model_config'):  # an interrupted save: the items, no metadata
    (tmp_path / 'damaged' / item).mkdir(parents=True)
  fails(CONVERT + ['to-pytorch', '--input', str(tmp_path / 'damaged'), *out],
        'cannot read checkpoint', 'damaged')


def _official_shapes(variant, num_classes):
  """`{official key: shape}` of a new model of `variant` (no arrays allocated)."""
  import jax  # pylint: disable=g-import-not-at-top
  from dualformer_jax import convert, models  # pylint: disable=g-import-not-at-top
  model = models.create_model(variant, num_classes=num_classes)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             np.zeros((1, *model.video_size, 3), np.float32),
                                             train=False))
  variables = jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), shapes)
  return {k: tuple(v.shape) for k, v in convert.to_pytorch(variables, model).items()}


def test_checkpoint_of_another_architecture_names_the_tensor(tmp_path, mini_safetensors):
  """A `mini` file given as `nano`: the first mismatched tensor with both of its shapes."""
  from dualformer_jax import convert  # pylint: disable=g-import-not-at-top
  video = tmp_path / 'v.mp4'
  video.write_bytes(b'0')
  lines = [
      fails(CONVERT + ['to-flax', '--input', mini_safetensors, '--variant', 'nano',
                       '--output', str(tmp_path / 'o')], 'first mismatched tensor'),
      fails(PREDICT + ['--checkpoint', mini_safetensors, '--variant', 'nano', '--video',
                       str(video)], 'mini.safetensors does not fit dualformer/nano',
            'first mismatched tensor')]
  checkpoint = {k: tuple(v.shape) for k, v in convert.load_state_dict(mini_safetensors).items()}
  model = _official_shapes('nano', 4)
  for line in lines:
    match = re.search(r'first mismatched tensor (\S+): checkpoint (\(.*?\)), model '
                      r'(\(.*?\))', line)
    assert match, line
    key, in_checkpoint, in_model = match.groups()
    assert in_checkpoint == str(checkpoint[key]) and in_model == str(model[key]), line
    assert in_checkpoint != in_model


def test_video_that_cannot_be_decoded(tmp_path, mini_safetensors):
  video = tmp_path / 'broken.mp4'
  video.write_bytes(b'\x00' * 1000)
  fails(PREDICT + ['--checkpoint', mini_safetensors, '--video', str(video)],
        'broken.mp4', 'decode')


def test_clip_that_does_not_fit_the_model(tmp_path, mini_safetensors):
  from dualformer_jax.data.video_io import write_video  # pylint: disable=g-import-not-at-top
  video = tmp_path / 'v.mp4'
  write_video(video, np.zeros((12, 64, 64, 3), np.uint8))
  fails(PREDICT + ['--checkpoint', mini_safetensors, '--video', str(video), '--clip_len', '5',
                   '--num_clips', '1', '--short_side', '64', '--crop_size', '64'],
        'expected', 'multiples')


def test_build_without_manual_dir(tmp_path):
  fails(BUILD + ['video_folder', '--data_dir', str(tmp_path)], '--manual_dir')
  fails(BUILD + ['video_folder', '--manual_dir', str(tmp_path / 'nope'), '--data_dir',
                 str(tmp_path / 'd')], 'nope', 'does not exist')


def test_build_class_outside_training_split(tmp_path):
  from dualformer_jax.data.video_io import write_video  # pylint: disable=g-import-not-at-top
  frames = np.zeros((4, 32, 32, 3), np.uint8)
  write_video(tmp_path / 'm/train/a/x.mp4', frames)
  write_video(tmp_path / 'm/test/zebra/y.mp4', frames)
  fails(BUILD + ['video_folder', '--manual_dir', str(tmp_path / 'm'), '--data_dir',
                 str(tmp_path / 'd'), '--num_workers', '1'], 'zebra')


def test_flops_bad_shape_and_verbose_traceback(tmp_path):
  fails(FLOPS + ['--clip', 'a,b'], 'T,H,W')
  result = subprocess.run(train(tmp_path, '--config.train.lrr=1', '--verbose'), cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'PYTHONPATH': str(REPO)})
  assert result.returncode == 1 and 'Traceback' in result.stderr, result.stderr
