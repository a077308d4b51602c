"""Token Labelling: the official head, soft targets and loss (golden), the training step
sharded and on one device, teacher loading, conversion of TL checkpoints."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import REFERENCE_DIR
from conftest import load_golden
from dualformer_jax import convert
from dualformer_jax import data
from dualformer_jax import model_checkpoint
from dualformer_jax import models
from dualformer_jax import parallel
from dualformer_jax import token_labelling as tl
from dualformer_jax.errors import ConfigError
from dualformer_jax.token_labelling import teacher as teacher_lib
from dualformer_jax.token_labelling import train_step as tl_step

GOLDEN = REFERENCE_DIR / 'dualformer_mini_tokenlabel_golden.npz'


@pytest.fixture(scope='module')
def golden():
  return load_golden(GOLDEN)


def _channels_last(features: np.ndarray) -> jnp.ndarray:
  return jnp.asarray(features.astype(np.float32).transpose(0, 2, 3, 4, 1))  # [b, d, h, w, c]


def _close(got, want, rtol=1e-5):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize('case', ['same', 'avg'])
def test_golden_head_targets_and_loss(golden, case):
  g = {k[len(case) + 1:]: v for k, v in golden.items() if k.startswith(case + '/')}
  sd = {k[3:]: v for k, v in golden.items() if k.startswith('sd/')}
  for name in ('student', 'teacher'):
    assert hashlib.sha256(g[f'features_{name}'].tobytes()).hexdigest() == \
        g[f'features_{name}_sha256']
  head = tl.TokenLabellingHead(int(golden['classes']))
  variables = tl.head_variables_from_pytorch(sd)
  cls_score, token_preds = head.apply(variables, _channels_last(g['features_student']))
  _close(cls_score, g['cls_score'])
  _close(token_preds, g['token_preds'])
  _close(jax.nn.softmax(cls_score), g['test_prob'])

  # The teacher head: its classifier per token (eval: no dropout).
  w, b = sd['teacher.cls_head.fc_cls.weight'], sd['teacher.cls_head.fc_cls.bias']
  raw = _channels_last(g['features_teacher']) @ jnp.asarray(w.T) + jnp.asarray(b)
  _close(raw, g['teacher_preds_raw'])
  grid = tuple(int(x) for x in g['grid_student'])
  assert tuple(token_preds.shape[1:4]) == grid
  _close(tl.temporal_average(raw, grid[0]), g['teacher_preds'])
  targets = tl.soft_targets(raw, grid)
  _close(targets, g['soft_label'])

  labels = jnp.asarray(g['labels'])
  total, cls_part, token_part = tl.loss(cls_score, token_preds, targets, labels,
                                        gamma=float(golden['gamma']))
  _close(total, g['loss_total'])
  _close(cls_part, g['loss_part_cls'])
  _close(token_part, g['loss_part_token'])


def test_head_structure_init_and_export(golden):
  head = tl.TokenLabellingHead(400)
  features = jnp.zeros((1, 2, 7, 7, 512))
  params = jax.eval_shape(lambda: head.init(jax.random.PRNGKey(0), features))['params']
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
  assert count - (512 * 400 + 400) == 3_444_112  # the Tiny token branch (TRAINING_EXTRAS 6.2)
  small = tl.TokenLabellingHead(10)
  variables = small.init(jax.random.PRNGKey(0), jnp.ones((1, 1, 1, 1, 64)))
  p = jax.tree_util.tree_map(np.asarray, variables['params'])
  p = {k: {n: getattr(v, 'value', v) for n, v in d.items()} for k, d in p.items()}
  # fc_cls: normal(0.01), bias 0; the token branch: PyTorch's U(+-1/sqrt(fan_in)).
  assert np.all(p['fc_cls']['bias'] == 0) and 0.005 < p['fc_cls']['kernel'].std() < 0.015
  for name, fan_in in (('token_linear_0', 64), ('token_linear_3', 128),
                       ('token_linear_6', 256)):
    for leaf in ('kernel', 'bias'):
      bound = np.abs(p[name][leaf]).max()
      assert 0.8 / np.sqrt(fan_in) < bound <= 1 / np.sqrt(fan_in), (name, leaf)
  sd = {k[3:]: v for k, v in golden.items() if k.startswith('sd/cls_head.')}
  back = tl.head_variables_to_pytorch(tl.head_variables_from_pytorch(sd))
  assert sorted(back) == sorted(sd)
  for key in sd:
    np.testing.assert_array_equal(back[key], sd[key])


def test_soft_targets_averaging_top_k_and_errors():
  logits = jnp.arange(2 * 4 * 1 * 1 * 6, dtype=jnp.float32).reshape(2, 4, 1, 1, 6)
  avg = tl.temporal_average(logits, 2)  # frame i = mean of teacher frames i and i + 2
  np.testing.assert_allclose(avg[:, 0], (logits[:, 0] + logits[:, 2]) / 2)
  adj = tl.temporal_average(logits, 2, 'adjacent')
  np.testing.assert_allclose(adj[:, 0], (logits[:, 0] + logits[:, 1]) / 2)
  row = jnp.asarray([3.0, 1.0, 2.0, 2.0, -1.0, 0.5])
  np.testing.assert_array_equal(tl.mask_top_k(row, 3), [3.0, 0.0, 2.0, 2.0, 0.0, 0.0])
  p = tl.soft_targets(row.reshape(1, 1, 1, 1, 6), (1, 1, 1), top_k=2)
  q = np.array([3.0, 0, 2.0, 2.0, 0, 0])  # ties with the 2nd value are kept
  np.testing.assert_allclose(p.ravel(), np.exp(q) / np.exp(q).sum(), rtol=1e-6)
  only = tl.soft_targets(row.reshape(1, 1, 1, 1, 6), (1, 1, 1), top_k=2, fill=-jnp.inf)
  np.testing.assert_allclose(only.ravel(), np.where(q > 0, np.exp(q), 0) / np.exp(
      q[q > 0]).sum(), rtol=1e-6)  # top_k_only: the top k (and ties) alone
  with pytest.raises(ValueError, match='multiple'):
    tl.temporal_average(logits, 3)
  with pytest.raises(ValueError, match='differ in space'):
    tl.soft_targets(logits, (2, 2, 1))


# ------------------------------------------------------------------------ training

CLASSES = 8
SMALL = dict(depths=(2, 0, 0, 0), drop_path_rate=0.0)  # both attentions and BatchNorm


@pytest.fixture(scope='module')
def teacher_dir(tmp_path_factory):
  """A nano teacher saved as one of our checkpoints."""
  model = models.create_model('nano', num_classes=CLASSES, **SMALL)
  variables = jax.jit(model.init)(jax.random.PRNGKey(7), jnp.zeros((1, 8, 64, 64, 3)))
  path = tmp_path_factory.mktemp('teacher') / 'nano'
  model_checkpoint.save_model(path, variables, model)
  return str(path)


def _batch(n=8):
  rng = np.random.default_rng(0)
  return {'video': rng.integers(0, 256, (n, 8, 64, 64, 3), dtype=np.uint8),
          'label': rng.integers(0, CLASSES, n).astype(np.int32)}


def _run_step(teacher, mesh, devices):
  student = models.create_model('nano', num_classes=CLASSES, token_head=True,
                                head_dropout_rate=0.0, token_dropout_rate=0.0, **SMALL)
  tx, schedule = optax.sgd(1.0), optax.constant_schedule(1.0)
  runtime = parallel.JitRuntime(student, tx, schedule, CLASSES, (1, 8, 64, 64, 3), mesh,
                                devices=devices)
  runtime.use_teacher(tl_step.make_train_step(student, teacher.model, tx, schedule),
                      teacher.variables, teacher.boxed_shapes())
  state = runtime.init_state(jax.random.PRNGKey(0))
  initial = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  state, metrics = runtime.train_step(state, _batch())
  return student, runtime, initial, runtime.fetch(metrics), jax.device_get(state.params)


def test_train_step_sharded_matches_one_device_and_the_loss(teacher_dir):
  teacher = teacher_lib.load_teacher(teacher_dir, num_classes=CLASSES,
                                     video_size=(8, 64, 64))
  student, _, initial, one, params_one = _run_step(teacher, {'data': 1}, jax.devices()[:1])
  _, runtime, _, eight, params_eight = _run_step(teacher, {'data': 4, 'fsdp': 2}, None)

  # The teacher is a sharded argument of the step, laid out by the logical rules.
  fc1 = runtime._step_args[0]['params']['backbone']['block_0_0']['mlp']['fc1']['kernel']
  assert fc1.sharding.spec == jax.sharding.PartitionSpec('fsdp', 'tensor')
  for key in ('loss', 'loss_cls', 'loss_token', 'accuracy'):
    assert eight[key] == pytest.approx(one[key], rel=1e-5), key
  for a, b in zip(jax.tree_util.tree_leaves(params_one), jax.tree_util.tree_leaves(params_eight)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  # The same numbers outside the step: eval-mode teacher, train-mode student, gamma 0.5.
  clips = data.normalize(jnp.asarray(_batch()['video']))
  t_logits = teacher_lib.token_logits(teacher.model, teacher.variables, clips)
  (cls, tok), _ = student.apply(initial, clips, train=True, mutable=['batch_stats'],
                                method='token_labelling_logits')
  total, c, t = tl.loss(cls, tok, tl.soft_targets(t_logits, tok.shape[1:4]),
                        jnp.asarray(_batch()['label']))
  assert one['loss'] == pytest.approx(float(total), rel=1e-5)
  assert (one['loss_cls'], one['loss_token']) == pytest.approx((float(c), float(t)), rel=1e-5)
  assert one['loss'] == pytest.approx(0.5 * one['loss_cls'] + 0.5 * one['loss_token'], rel=1e-6)


def test_teacher_class_mismatch_is_one_config_error(teacher_dir):
  with pytest.raises(ConfigError, match='teacher has 8 classes and the student 5'):
    teacher_lib.load_teacher(teacher_dir, num_classes=5, video_size=(8, 64, 64))
  with pytest.raises(ConfigError, match='built for clips'):
    teacher_lib.load_teacher(teacher_dir, num_classes=CLASSES, video_size=(16, 64, 64))
  student = models.create_model('nano', num_classes=CLASSES)  # token grid (4, 2, 2)
  twice = models.create_model('nano', video_size=(16, 64, 64))  # (8, 2, 2): averages
  teacher_lib.check_grids(student, twice)
  with pytest.raises(ConfigError, match=r'\(4, 4, 4\) does not map onto the student'):
    teacher_lib.check_grids(student, models.create_model('nano', video_size=(8, 128, 128)))


# ---------------------------------------------------------------------- conversion


def test_official_tl_checkpoint_converts_both_ways_and_serves_as_teacher(tmp_path, caplog):
  student = models.create_model('nano', num_classes=CLASSES, token_head=True)
  variables = jax.device_get(jax.jit(student.init)(jax.random.PRNGKey(3),
                                                   jnp.zeros((1, 8, 64, 64, 3))))
  variables = {'params': variables['params'], 'batch_stats': variables['batch_stats']}
  variables = jax.tree_util.tree_map(lambda x: getattr(x, 'value', x), variables,
                                     is_leaf=lambda x: hasattr(x, 'value'))
  sd = convert.to_pytorch(variables, student)
  assert {k for k in sd if k.startswith('cls_head.')} == {
      f'cls_head.{m}.{leaf}' for m in ('fc_cls', 'token_linear.0', 'token_linear.3',
                                       'token_linear.6') for leaf in ('weight', 'bias')}
  assert sd['cls_head.token_linear.3.weight'].shape == (1024, 512)  # (4C, 2C), C = 256
  # An official TL checkpoint also holds its teacher: dropped on import, with one message.
  official = dict(sd, **{'teacher.' + k: v for k, v in sd.items() if 'token_linear' not in k})
  with caplog.at_level('WARNING'):
    back = convert.from_pytorch(official, student)
  assert sum('teacher.* tensors' in r.message for r in caplog.records) == 1
  for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(back)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # As a plain recognizer: the token branch is dropped too.
  plain = models.create_model('nano', num_classes=CLASSES)
  caplog.clear()
  with caplog.at_level('WARNING'):
    plain_vars = convert.from_pytorch(official, plain)
  assert any('cls_head.token_linear.* tensors' in r.message for r in caplog.records)
  assert sorted(plain_vars['params']['head']) == ['fc_cls']
  # The file as a teacher (a runner-style checkpoint: `state_dict` + `meta`).
  path = tmp_path / 'tl_nano.pth'
  convert.save_state_dict(official, path)
  teacher = teacher_lib.load_teacher(str(path), num_classes=CLASSES, video_size=(8, 64, 64))
  assert not teacher.model.token_head
  np.testing.assert_array_equal(teacher.variables['params']['head']['fc_cls']['kernel'],
                                variables['params']['head']['fc_cls']['kernel'])
  with pytest.raises(ConfigError, match='teacher has 8 classes and the student 400'):
    teacher_lib.load_teacher(str(path), num_classes=400, video_size=(8, 64, 64))
  with pytest.raises(ConfigError, match='DualFormer-nano, but config.token_labelling'):
    teacher_lib.load_teacher(str(path), num_classes=CLASSES, video_size=(8, 64, 64),
                             variant='base')


def test_convert_to_flax_keeps_the_token_head_of_an_official_tl_file(tmp_path):
  from dualformer_jax.convert import __main__ as convert_cli  # pylint: disable=g-import-not-at-top
  student = models.create_model('nano', num_classes=CLASSES, token_head=True)
  shapes = jax.eval_shape(lambda: student.init(jax.random.PRNGKey(0),
                                               jnp.zeros((1, 8, 64, 64, 3))))
  shapes = {'params': shapes['params'], 'batch_stats': shapes['batch_stats']}
  rng = np.random.default_rng(0)
  variables = jax.tree_util.tree_map(
      lambda x: rng.standard_normal(getattr(x, 'value', x).shape).astype(np.float32), shapes,
      is_leaf=lambda x: hasattr(x, 'value'))
  sd = convert.to_pytorch(variables, student)
  path = tmp_path / 'tl_nano.safetensors'
  convert.save_state_dict(dict(sd, **{'teacher.' + k: v for k, v in sd.items()
                                      if 'token_linear' not in k}), path)
  out = tmp_path / 'flax'
  assert convert_cli.main(['to-flax', '--input', str(path), '--variant', 'nano',
                           '--output', str(out)]) == 0
  model, loaded = model_checkpoint.load_model(str(out))
  assert model.token_head and model.num_classes == CLASSES
  token = loaded['params']['head']['token_linear_6']
  want = variables['params']['head']['token_linear_6']
  np.testing.assert_array_equal(np.asarray(token['kernel']), want['kernel'])
  np.testing.assert_array_equal(np.asarray(token['bias']), want['bias'])
