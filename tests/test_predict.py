"""The predict command: views, both checkpoint kinds, containers, clear errors."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from dualformer_jax import convert
from dualformer_jax import model_checkpoint
from dualformer_jax import models
from dualformer_jax import predict
from dualformer_jax import sharding
from dualformer_jax.data import sampling
from dualformer_jax.data import synthetic
from dualformer_jax.data import transforms
from dualformer_jax.data import video_io
from test_model import random_variables

REPO = pathlib.Path(__file__).resolve().parents[1]
CONTAINERS = {'mp4': 'libx264', 'avi': 'mjpeg', 'webm': 'libvpx-vp9', 'mkv': 'mpeg4'}


def run_predict(*args, env=None):
  """`python -m dualformer_jax.predict ARGS` from the repository root."""
  return subprocess.run([sys.executable, '-m', 'dualformer_jax.predict', *map(str, args)],
                        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
                        env={**os.environ, **(env or {})})


@pytest.fixture(scope='module')
def frames():
  """40 frames of a square moving right (class 'right' of the synthetic set), 64x64."""
  return synthetic.render_motion_video(4, np.random.default_rng(0), num_frames=40, size=64)


@pytest.fixture(scope='module')
def videos(tmp_path_factory, frames):
  """The same frames in four containers / codecs, written with PyAV."""
  root = tmp_path_factory.mktemp('videos')
  paths = {}
  for ext, codec in CONTAINERS.items():
    paths[ext] = root / f'right.{ext}'
    video_io.write_video(paths[ext], frames, fps=25, codec=codec)
  paths['corrupt'] = root / 'corrupt.mp4'
  paths['corrupt'].write_bytes(np.random.default_rng(0).bytes(4000))
  paths['truncated'] = root / 'truncated.mp4'
  paths['truncated'].write_bytes(paths['mp4'].read_bytes()[:1500])
  return paths


@pytest.fixture(scope='module')
def labels(tmp_path_factory):
  path = tmp_path_factory.mktemp('labels') / 'classes.txt'
  path.write_text('\n'.join(synthetic.SYNTHETIC_CLASSES) + '\n')
  return path


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A training workdir: steps 3 and 7 (different weights) and an unfinished save."""
  root = tmp_path_factory.mktemp('run')
  model = models.create_model('nano', num_classes=8)
  steps = {}
  for step, seed in ((3, 0), (7, 1)):
    steps[step] = random_variables(model, seed)
    model_checkpoint.save_model(root / 'checkpoints' / str(step), steps[step], model)
  (root / 'checkpoints' / '9.orbax-checkpoint-tmp-12').mkdir()
  (root / 'checkpoints' / '11').mkdir()  # no items yet
  return root, model, steps


@pytest.fixture(scope='module')
def official_pth(tmp_path_factory, golden_state_dict):
  """The golden official checkpoint (mini, 10 classes) as an mmcv-style .pth file."""
  torch = pytest.importorskip('torch')
  path = tmp_path_factory.mktemp('official') / 'dualformer_mini.pth'
  torch.save({'state_dict': {k: torch.from_numpy(np.array(v))
                             for k, v in golden_state_dict.items()}}, path)
  return path


def reference_probabilities(model, variables, video_frames, settings):
  """The protocol spelled out: sampled indices, resize + centre crop, mean of softmaxes."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  idx = sampling.sample_test_indices(len(video_frames), settings.clip_len,
                                     settings.frame_interval, settings.num_clips)
  size = settings.crop_size
  clips = []
  for clip_idx in idx:
    clip = []
    for i in clip_idx:
      img = Image.fromarray(np.asarray(video_frames[i]))
      scale = settings.short_side / min(img.size)
      img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
      left, top = (img.width - size) // 2, (img.height - size) // 2
      clip.append(np.asarray(img.crop((left, top, left + size, top + size))))
    clips.append(clip)
  logits = jax.jit(model.apply)(variables, transforms.normalize(np.asarray(clips)))
  return np.asarray(jax.nn.softmax(logits, axis=-1)).mean(0)


def check_top_k(printed, probs, k, atol=2e-4):
  """`printed` ({class index: probability}, in printed order) is the top `k` of `probs`."""
  assert len(printed) == k
  values = list(printed.values())
  assert values == sorted(values, reverse=True)
  for index, p in printed.items():
    assert p == pytest.approx(probs[index], abs=atol)
  assert min(values) >= np.sort(probs)[::-1][k - 1] - atol  # nothing higher left out


def test_views_follow_the_test_protocol():
  """Clip indices of `sample_test_indices`, three crops along the longer side."""
  t, h, w = 30, 64, 96
  video = np.zeros((t, h, w, 3), np.uint8)
  video[..., 0] = np.arange(t)[:, None, None]  # frame index
  video[..., 1] = np.arange(w)[None, None, :]  # column
  settings = predict.ViewSettings(num_clips=3, num_crops=3, clip_len=4, frame_interval=3,
                                  short_side=64, crop_size=64)
  views = predict.video_views(list(video), settings)
  assert views.shape == (9, 4, 64, 64, 3)
  idx = sampling.sample_test_indices(t, 4, 3, 3)
  for c in range(3):
    for k, left in enumerate((0, 16, 32)):  # start / centre / end of the width
      view = views[c * 3 + k]
      np.testing.assert_array_equal(view[:, 0, 0, 0], idx[c])
      np.testing.assert_array_equal(view[0, 0, :, 1], np.arange(left, left + 64))
  # A short side smaller than the frame: resize first, then crop the centre.
  small = predict.video_views(list(video), predict.ViewSettings(1, 1, 4, 3, 32, 32))
  assert small.shape == (1, 4, 32, 32, 3)
  assert abs(int(small[0, 0, 0, 16, 1]) - 48) <= 1  # column 48 of 96 is the centre


def test_classify_video_matches_the_protocol_in_every_container(workdir, videos, frames):
  _, model, steps = workdir
  variables = steps[7]
  settings = predict.default_view_settings(model)
  assert (settings.num_clips, settings.num_crops, settings.clip_len,
          settings.short_side, settings.crop_size) == (4, 1, 8, 64, 64)
  results = {}
  for ext in CONTAINERS:
    results[ext] = probs = predict.classify_video(model, variables, videos[ext])
    assert probs.shape == (8,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    decoded, _, _ = video_io.read_video(videos[ext])
    np.testing.assert_allclose(
        probs, reference_probabilities(model, variables, decoded, settings), atol=1e-5)
  for ext in CONTAINERS:  # lossy codecs, same content
    np.testing.assert_allclose(results[ext], results['mp4'], atol=0.02)
  # Frames in memory work too; three crops, other clip counts.
  in_memory = predict.classify_video(model, variables, frames, num_clips=2, num_crops=3,
                                     short_side=72)
  assert in_memory.shape == (8,) and in_memory.sum() == pytest.approx(1.0, abs=1e-5)


def test_command_with_our_checkpoint(workdir, videos, labels):
  root, model, steps = workdir
  result = run_predict('--checkpoint', root, '--video', videos['mp4'], '--labels', labels)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert 'right.mp4: 40 frames; 4 clips x 1 crop of 8 frames' in lines[0]
  assert lines[1].split() == ['rank', 'class', 'probability']
  rows = [line.split() for line in lines[2:]]
  assert [r[0] for r in rows] == ['1', '2', '3', '4', '5']
  # The latest finished step (7) was used: the top-5 of the in-process prediction.
  probs = predict.classify_video(model, steps[7], videos['mp4'])
  printed = {synthetic.SYNTHETIC_CLASSES.index(r[1]): float(r[2]) for r in rows}
  check_top_k(printed, probs, 5)
  print('\n' + result.stdout)  # shown with -s

  # JSON, another container, a step directory, three crops.
  result = run_predict('--checkpoint', root / 'checkpoints' / '3', '--video', videos['webm'],
                       '--json', '--num_crops', '3', '--short_side', '80', '--top_k', '8')
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert out['views'] == dict(num_clips=4, num_crops=3, clip_len=8, frame_interval=2,
                              short_side=80, crop_size=64)
  assert [r['class'] for r in out['top_k']][:1] == [f'class_{out["top_k"][0]["index"]}']
  probs = predict.classify_video(model, steps[3], videos['webm'], num_crops=3, short_side=80)
  check_top_k({r['index']: r['probability'] for r in out['top_k']}, probs, 8)


def test_command_with_an_official_pth(official_pth, golden, videos):
  result = run_predict('--checkpoint', official_pth, '--video', videos['avi'], '--json',
                       '--num_clips', '2')
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert out['views']['crop_size'] == 224 and out['views']['clip_len'] == 8
  assert len(out['top_k']) == 5
  # In-process: the variant and classes are read from the file, the weights are the
  # official model's (its golden logits), and the command printed their prediction.
  model, variables = predict.load_checkpoint(official_pth)
  assert model == models.create_model('mini', num_classes=10)
  clips = golden['input'].astype(np.float32).transpose(0, 2, 3, 4, 1)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, clips), golden['logits'],
                             rtol=1e-4, atol=1e-4)
  probs = predict.classify_video(model, variables, videos['avi'], num_clips=2)
  check_top_k({r['index']: r['probability'] for r in out['top_k']}, probs, 5)


@pytest.mark.parametrize('kind', ['corrupt', 'truncated'])
def test_command_on_a_broken_video(workdir, videos, kind):
  result = run_predict('--checkpoint', workdir[0], '--video', videos[kind])
  assert result.returncode != 0
  assert result.stderr.startswith(f'error: cannot decode video {videos[kind]}')
  assert 'Traceback' not in result.stderr and result.stdout == ''


def test_command_without_a_checkpoint(tmp_path, videos):
  result = run_predict('--checkpoint', tmp_path / 'nowhere', '--video', videos['mp4'])
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert result.stderr.strip() == f'error: checkpoint not found: {tmp_path / "nowhere"}'


def test_clear_errors(workdir, videos, labels, tmp_path, capsys, official_pth):
  root, _, _ = workdir

  def error(*args):
    assert predict.main([str(a) for a in args]) == 1
    return capsys.readouterr().err.strip()

  few = tmp_path / 'three.txt'
  few.write_text('a\nb\nc\n')
  assert error('--checkpoint', root, '--video', videos['mp4'], '--labels', few) == (
      f'error: {few} names 3 classes but the model has 8.')
  assert 'no checkpoint in' in error('--checkpoint', tmp_path, '--video', videos['mp4'])
  assert error('--checkpoint', root, '--video', tmp_path / 'x.mp4') == (
      f'error: video not found: {tmp_path / "x.mp4"}')
  empty = tmp_path / 'empty.mkv'
  empty.write_bytes(b'')
  assert error('--checkpoint', root, '--video', empty) == (
      f'error: cannot decode video {empty}: zero-byte file')
  assert 'does not match the checkpoint, whose classifier has 10 classes' in error(
      '--checkpoint', official_pth, '--video', videos['mp4'], '--num_classes', '400')
  assert 'does not fit dualformer/tiny' in error(
      '--checkpoint', official_pth, '--video', videos['mp4'], '--variant', 'tiny')
  assert 'does not fit the local windows' in error(
      '--checkpoint', root, '--video', videos['mp4'], '--clip_len', '6')


def test_config_gives_defaults(tmp_path, workdir, videos, capsys):
  config = tmp_path / 'my_config.py'
  config.write_text(
      'import ml_collections\n\n'
      'def get_config(arg=None):\n'
      '  c = ml_collections.ConfigDict()\n'
      '  c.model = ml_collections.ConfigDict(dict(variant="nano", num_classes=-1))\n'
      '  c.data = ml_collections.ConfigDict(dict(\n'
      '      name="video_folder/absent", data_dir="nowhere", clip_len=8, frame_interval=4,\n'
      '      eval_short_side=int(arg or 64), eval_crop_size=64))\n'
      '  return c\n')
  assert predict.config_defaults(f'{config}:72') == dict(
      clip_len=8, frame_interval=4, short_side=72, crop_size=64, variant='nano')
  assert predict.main(['--checkpoint', str(workdir[0]), '--video', str(videos['mp4']),
                       '--config', f'{config}:72', '--frame_interval', '1', '--json']) == 0
  out = json.loads(capsys.readouterr().out)
  assert out['views'] == dict(num_clips=4, num_crops=1, clip_len=8, frame_interval=1,
                              short_side=72, crop_size=64)


def test_load_checkpoint_kinds(workdir, tmp_path, golden_state_dict):
  root, model, steps = workdir
  for path in (root, root / 'checkpoints', root / 'checkpoints' / '7'):
    assert predict.find_checkpoint(path) == os.fspath(root / 'checkpoints' / '7')
  loaded, variables = predict.load_checkpoint(root)
  assert loaded == model
  np.testing.assert_array_equal(variables['params']['head']['fc_cls']['bias'],
                                steps[7]['params']['head']['fc_cls']['bias'])
  # .safetensors and an exported nano model: variant inferred from the shapes.
  exported = tmp_path / 'nano.safetensors'
  convert.save_state_dict(convert.to_pytorch(steps[3], model), exported)
  assert predict.infer_variant(golden_state_dict) == 'mini'
  loaded, variables = predict.load_checkpoint(exported)
  assert loaded == model
  np.testing.assert_allclose(variables['params']['head']['fc_cls']['kernel'],
                             steps[3]['params']['head']['fc_cls']['kernel'])


def test_checkpoint_saved_on_another_topology(tmp_path, workdir, videos):
  """A step saved sharded over 8 devices (a TPU mesh) is read by a 1-device process."""
  root, model, steps = workdir
  assert jax.device_count() == 8
  mesh = sharding.create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                            np.zeros((1, 8, 64, 64, 3), np.float32)))
  layout = sharding.logical_to_shardings(boxed, mesh)
  sharded = jax.device_put(steps[7], layout)
  fc1 = sharded['params']['backbone']['block_0_0']['mlp']['fc1']['kernel']
  assert fc1.addressable_shards[0].data.shape == (16, 64)
  model_checkpoint.save_model(tmp_path / 'sharded', sharded, model)

  one_device = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split()
                        if 'device_count' not in f)
  result = run_predict('--checkpoint', tmp_path / 'sharded', '--video', videos['mp4'],
                       '--json', env={'XLA_FLAGS': one_device})
  assert result.returncode == 0, result.stderr[-3000:]
  probs = predict.classify_video(model, steps[7], videos['mp4'])
  check_top_k({r['index']: r['probability'] for r in json.loads(result.stdout)['top_k']},
              probs, 5)
