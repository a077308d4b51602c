"""Offline Token Labelling: `python -m dualformer_jax.token_labelling annotate` over a built
synthetic dataset with a small random teacher, and the stored labels mapped back onto the
canonical clips equal the on-line soft targets."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualformer_jax import data
from dualformer_jax import model_checkpoint
from dualformer_jax import models
from dualformer_jax import token_labelling as tl
from dualformer_jax.data import pipeline
from dualformer_jax.errors import ConfigError
from dualformer_jax.token_labelling import __main__ as tl_cli
from dualformer_jax.token_labelling import annotate
from dualformer_jax.token_labelling import offline
from dualformer_jax.token_labelling import teacher as teacher_lib

SMALL = dict(depths=(2, 0, 0, 0), drop_path_rate=0.0)


@pytest.fixture(scope='module')
def labelled(tmp_path_factory):
  """A synthetic dataset (16-frame 64x64 videos), a nano teacher and its stored labels."""
  root = tmp_path_factory.mktemp('offline_tl')
  data_dir = str(root / 'data')
  name = data.ensure_synthetic_dataset(data_dir, num_videos_per_class_train=1,
                                       num_videos_per_class_test=1, num_frames=16, size=64,
                                       num_workers=1)
  classes = data.dataset_info(name, data_dir).num_classes
  model = models.create_model('nano', num_classes=classes, **SMALL)
  variables = jax.jit(model.init)(jax.random.PRNGKey(5), jnp.zeros((1, 8, 64, 64, 3)))
  teacher_dir = str(root / 'teacher')
  model_checkpoint.save_model(teacher_dir, variables, model)
  out = str(root / 'labels')
  rc = tl_cli.main(['annotate', '--config', 'configs/default.py', '--teacher', teacher_dir,
                    '--output', out, '--batch_size', '4', '--quiet',
                    f'--config.data.data_dir={data_dir}', f'--config.data.name={name}',
                    '--config.data.synthetic=False'])
  assert rc == 0
  return dict(data_dir=data_dir, name=name, teacher=teacher_dir, out=out, classes=classes)


def test_offline_targets_equal_online_on_the_canonical_view(labelled):
  labels = offline.TokenLabels(labelled['out'], 'train')
  meta = labels.meta
  assert (meta['clip_len'], meta['frame_interval'], meta['crop_size'], meta['top_k']) == \
      (8, 1, 64, 5)
  n = len(labels)
  assert n == labelled['classes']  # one training video per class
  # 16 frames, clips of 8 frames 1 apart: two clips per video, frames 0-7 and 8-15.
  np.testing.assert_array_equal(labels.num_clips, np.full(n, 2))
  np.testing.assert_array_equal(labels.frame_indices[3], [np.arange(8), np.arange(8, 16)])
  np.testing.assert_array_equal(labels.box, np.tile([0, 0, 64, 64], (n, 1)))

  teacher = teacher_lib.load_teacher(labelled['teacher'], num_classes=labelled['classes'],
                                     video_size=(8, 64, 64))
  grid = teacher_lib.token_grid(teacher.model)
  source = pipeline._source(labelled['name'], labelled['data_dir'], 'train')  # pylint: disable=protected-access
  examples = (0, 5)
  clips, indices = [], []
  for i in examples:
    ex = pipeline._parse(source[i])  # pylint: disable=protected-access
    idx, box, video = annotate.canonical_clips(ex['video'], int(ex['num_frames']), clip_len=8,
                                               frame_interval=1, crop_size=64)
    assert box == (0.0, 0.0, 64.0, 64.0)
    clips.append(video)
    indices.append(idx)
  video = np.concatenate(clips)  # [4, 8, 64, 64, 3]: two videos x two clips
  logits = jax.jit(lambda v, x: teacher_lib.token_logits(teacher.model, v, data.normalize(x)))(
      teacher.variables, video)  # [4, dt, ht, wt, K]
  online = np.asarray(tl.soft_targets(logits, grid))  # [4, d, h, w, K]
  # the stored top-5 are the teacher's
  top_values = np.sort(np.asarray(logits), axis=-1)[..., ::-1][..., :5]
  np.testing.assert_allclose(labels.values[[0, 0, 5, 5], [0, 1, 0, 1]], top_values,
                             rtol=1e-5, atol=1e-5)
  for j, (i, c) in enumerate([(0, 0), (0, 1), (5, 0), (5, 1)]):
    for spatial in offline.SPATIAL_MODES:
      got = labels.targets(i, indices[j // 2][c], (0, 0, 64, 64), grid, spatial=spatial)
      assert got.shape == online[j].shape
      np.testing.assert_allclose(got, online[j], rtol=0, atol=1e-5)
  assert np.abs(online[0] - online[1]).max() > 1e-3  # the clips' targets differ

  # Not aligned: a flipped clip mirrors the map; a shifted clip takes the nearest tokens.
  full = labels.targets(0, np.arange(8), (0, 0, 64, 64), grid)
  flipped = labels.targets(0, np.arange(8), (0, 0, 64, 64), grid, flip=True)
  np.testing.assert_allclose(flipped, full[:, :, ::-1], atol=1e-7)
  shifted = labels.targets(0, np.arange(1, 9), (0, 0, 32, 32), grid)  # top-left quarter
  np.testing.assert_allclose(shifted.sum(-1), 1.0, atol=1e-5)
  assert not np.allclose(shifted, full, atol=1e-4)
  with pytest.raises(ConfigError, match='keep 5 classes'):
    labels.targets(0, np.arange(8), (0, 0, 64, 64), grid, top_k=6)


def test_annotate_errors_are_one_line(labelled, capsys):
  args = ['annotate', '--config', 'configs/default.py', '--output', labelled['out'] + '_x',
          f'--config.data.data_dir={labelled["data_dir"]}',
          f'--config.data.name={labelled["name"]}', '--config.data.synthetic=False']
  assert tl_cli.main(args) == 1
  assert capsys.readouterr().err.strip() == ('error: no teacher: pass --teacher or set '
                                             'config.token_labelling.teacher.')
  assert tl_cli.main(args + ['--teacher', labelled['teacher'], '--splits', 'nope']) == 1
  assert "split 'nope' is not in" in capsys.readouterr().err
  with pytest.raises(ConfigError, match='no token labels'):
    offline.TokenLabels(labelled['out'], 'test')
  assert json.load(open(os.path.join(labelled['out'], 'train', 'meta.json')))['grid'] == \
      list(teacher_lib.token_grid(models.create_model('nano', **SMALL)))


def test_pipeline_meta_and_stored_targets_of_training_batches(labelled):
  kwargs = dict(name=labelled['name'], data_dir=labelled['data_dir'], batch_size=4,
                clip_len=8, frame_interval=1, crop_size=64, area_range=(0.3, 1.0), flip=True,
                seed=3, process_index=0, process_count=1, num_threads=1)
  plain = next(iter(data.create_train_dataset(**kwargs)))
  batch = next(iter(data.create_train_dataset(with_meta=True, **kwargs)))
  assert sorted(plain) == ['label', 'video']  # the default is unchanged
  np.testing.assert_array_equal(batch['video'], plain['video'])  # same clips, with meta
  np.testing.assert_array_equal(batch['label'], plain['label'])
  assert batch['frame_indices'].shape == (4, 8) and batch['box'].shape == (4, 4)
  source = pipeline._source(labelled['name'], labelled['data_dir'], 'train')  # pylint: disable=protected-access
  for j in range(4):  # the meta re-renders the clip exactly
    ex = pipeline._parse(source[int(batch['index'][j])])  # pylint: disable=protected-access
    assert int(ex['label']) == batch['label'][j]
    idx = batch['frame_indices'][j]
    unique, out = data.transforms._render_frames(  # pylint: disable=protected-access
        ex['video'], idx, [tuple(batch['box'][j])], 64, bool(batch['flip'][j]))
    np.testing.assert_array_equal(out[0, np.searchsorted(unique, idx)], batch['video'][j])
  labels = offline.TokenLabels(labelled['out'], 'train')
  grid = (4, 2, 2)
  with_targets = offline.AddTargets(labels, grid)(batch)
  assert sorted(with_targets) == ['label', 'targets', 'video']
  assert with_targets['targets'].shape == (4, *grid, labelled['classes'])
  np.testing.assert_allclose(with_targets['targets'].sum(-1), 1.0, atol=1e-5)


def test_training_reads_the_stored_labels(labelled, tmp_path):
  from configs import default as default_config  # pylint: disable=g-import-not-at-top
  from dualformer_jax import train_lib  # pylint: disable=g-import-not-at-top
  c = default_config.get_config()
  c.model.depths = (1, 0, 0, 0)
  c.data.update(name=labelled['name'], data_dir=labelled['data_dir'], synthetic=False,
                num_workers=0)
  c.train.update(batch_size=4, num_steps=1, warmup_epochs=0.0, log_every_steps=1)
  c.eval.update(at_end=False)
  c.checkpoint.update(every_steps=0)
  c.token_labelling.update(labels=labelled['out'], token_dropout_rate=0.0)
  c.mesh.num_devices = 1
  train_lib.train_and_evaluate(c, str(tmp_path))
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  rows = [r for r in rows if 'loss_token' in r]
  assert [r['step'] for r in rows] == [1]
  for r in rows:  # gamma 0.5; soft targets over 8 classes: token CE near log(8)
    assert r['loss'] == pytest.approx(0.5 * (r['loss_cls'] + r['loss_token']), rel=1e-5)
    assert 1.5 < r['loss_token'] < 3.5
  c.token_labelling.update(top_k=6)
  with pytest.raises(ConfigError, match='keep 5 classes per token'):
    train_lib.setup(c)
