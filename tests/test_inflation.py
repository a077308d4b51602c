"""ImageNet 2D -> 3D inflation (DualFormer): the official result bit for bit, Twins-SVT
files, errors, and the `inflate` command."""

import os
import subprocess
import sys

import conftest
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualformer_jax import convert
from dualformer_jax import models
from dualformer_jax.models.dualformer import inflation

GOLDEN = conftest.REFERENCE_DIR / 'dualformer_mini_inflation_golden.npz'


@pytest.fixture(scope='module')
def gold():
  if not GOLDEN.exists():
    pytest.skip(f'inflation golden not found at {GOLDEN}')
  with np.load(GOLDEN) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope='module')
def model(gold):
  return models.create_model(str(gold['config']), num_classes=int(gold['classes']),
                             video_size=gold['input'].shape[2:])


@pytest.fixture(scope='module')
def sd2d(gold):
  return {str(k): gold[f'sd2d/{k}'] for k in gold['keys_2d']}


@pytest.fixture(scope='module')
def init_3d(model):
  example = jnp.zeros((1, *models.input_shape(model), 3), jnp.float32)
  init = jax.jit(lambda r: model.init(r, example, train=False))(jax.random.PRNGKey(1))
  return convert.to_pytorch(init, model)


@pytest.fixture(scope='module')
def logits_fn(model):
  return jax.jit(lambda v, x: model.apply(v, x, train=False))


def _clip(gold):
  return jnp.asarray(gold['input'].astype(np.float32).transpose(0, 2, 3, 4, 1))


def _assert_bits(ours, want, keys):
  for key in keys:
    assert ours[key].dtype == want[key].dtype or ours[key].dtype.kind == want[key].dtype.kind == 'i', key
    np.testing.assert_array_equal(ours[key], want[key], err_msg=key)
    assert ours[key].shape == want[key].shape, key


def _rel(a, b):
  return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def test_golden_bit_for_bit_and_logits(gold, model, sd2d, logits_fn):
  variables, report = convert.inflate_with_report(sd2d, model)
  ours = convert.to_pytorch(variables, model)
  want = {k[len('sd3d/'):]: v for k, v in gold.items() if k.startswith('sd3d/')}
  assert sorted(ours) == sorted(want)
  backbone = [k for k in want if k.startswith('backbone.')]
  _assert_bits(ours, want, backbone)
  assert sorted(report.from_init) == sorted(gold['left_at_init'])
  assert sorted(report.constant) == sorted(gold['set_to_constant'])
  assert sorted(report.ignored) == sorted(list(gold['unexpected_keys']) + list(gold['discarded_2d']))
  assert len(report.inflated) + len(report.loaded) + len(report.constant) == len(backbone)
  # The head is at the model's init in the official flow; the golden seeded it.
  with_head = convert.from_pytorch({**ours, **{k: want[k] for k in gold['left_at_init']}}, model)
  logits = logits_fn(with_head, _clip(gold))
  err = _rel(logits, gold['logits'])
  print(f'inflation golden logits max rel err {err:.2e}')
  assert err < 1e-4


def test_golden_partial_file(gold, model, sd2d, logits_fn):
  dropped = {str(k) for k in gold['partial/dropped_2d']}
  variables, report = convert.inflate_with_report(
      {k: v for k, v in sd2d.items() if k not in dropped}, model, rng=jax.random.PRNGKey(3))
  ours = convert.to_pytorch(variables, model)
  left = sorted(str(k) for k in gold['partial/left_at_init'])
  assert sorted(k for k in report.from_init if k.startswith('backbone.')) == left
  want = {k[len('sd3d/'):]: v for k, v in gold.items() if k.startswith('sd3d/')}
  partial = {k[len('partial/sd3d/'):]: v for k, v in gold.items() if k.startswith('partial/sd3d/')}
  overwritten = {str(k) for k in gold['partial/overwritten']}
  others = [k for k in want if k.startswith('backbone.') and k not in left]
  _assert_bits(ours, want, others)
  # BatchNorm defaults are deterministic: equal the official init.
  _assert_bits(ours, partial, [k for k in left if k not in overwritten])
  merged = {**ours, **{k: partial[k] for k in overwritten},
            **{k: want[k] for k in gold['left_at_init']}}
  logits = logits_fn(convert.from_pytorch(merged, model), _clip(gold))
  err = _rel(logits, gold['partial/logits'])
  print(f'inflation partial logits max rel err {err:.2e}')
  assert err < 1e-4


def _twins_like(sd2d):
  """A timm Twins-SVT state dict's layout (reference notes section 4), at mini widths:
  full-conv `attn.sr`, no coarse level (`attn.lr.*`), an ImageNet `head`."""
  rng = np.random.default_rng(0)
  twins = {}
  for key, value in sd2d.items():
    if '.attn.lr.' in key:
      continue
    shape = value.shape
    if key.endswith('attn.sr.weight'):
      shape = (shape[0], shape[0], *shape[2:])
    twins[key] = rng.standard_normal(shape).astype(np.float32) * 0.02
  return twins


def test_twins_svt_layout(init_3d, sd2d):
  twins = _twins_like(sd2d)
  sd3, report = inflation.inflate_state_dict(
      {f'module.{k}': v for k, v in reversed(list(twins.items()))}, init_3d)
  sr = sorted(f'backbone.{k}' for k in twins if k.endswith('attn.sr.weight'))
  coarse = sorted(k for k in init_3d if '.attn.lr.' in k and '.lr.3.' not in k)
  assert len(sr) == 3 and len(coarse) == 14
  assert sorted(report.from_init) == sorted(sr + coarse + ['cls_head.fc_cls.bias',
                                                           'cls_head.fc_cls.weight'])
  assert sorted(report.constant) == sorted(k for k in init_3d if '.attn.lr.3.' in k)
  for key in sr + coarse:
    np.testing.assert_array_equal(sd3[key], init_3d[key])
  assert set(report.ignored) == {k for k in twins if k.endswith('attn.sr.weight')} | {
      'head.weight', 'head.bias'}
  assert any('module.' in n for n in report.notes)
  loaded = set(report.loaded) | set(report.inflated)
  assert loaded == {f'backbone.{k}' for k in twins} - set(sr) - {'backbone.head.weight',
                                                                'backbone.head.bias'}
  # Time axis from the 3D shape, not the key order: patch embedding 0 repeated 2x / 2.
  w2 = twins['patch_embeds.0.proj.weight']
  np.testing.assert_array_equal(sd3['backbone.patch_embeds.0.proj.weight'][:, :, 1], w2 / np.float32(2))


def test_wrong_variant_names_first_mismatch(init_3d):
  # A 2D Tiny file (official key/shape listing, time axes removed) for the mini model.
  tiny = conftest.official_listing('tiny')
  sd2 = {k[len('backbone.'):]: np.zeros(shape[:2] + shape[3:] if len(shape) == 5 else shape,
                                        np.float32)
         for k, (shape, _) in tiny.items() if k.startswith('backbone.')}
  with pytest.raises(inflation.InflationError,
                     match=r'blocks\.0\.0\.attn\.proj\.bias: the 2D file has shape \(64,\), '
                           r'the model needs \(16,\)'):
    inflation.inflate_state_dict(sd2, init_3d)


def test_almost_nothing_matches(init_3d, sd2d):
  few = {k: v for k, v in list(sd2d.items())[:10]}
  few.update({f'layer{i}.weight': np.zeros(3, np.float32) for i in range(100)})
  with pytest.raises(inflation.InflationError, match=r'matches only 10 of the 156 backbone'):
    inflation.inflate_state_dict(few, init_3d)


def test_family_without_inflation():
  if 'lvt' not in models.families():
    pytest.skip('no second family registered')
  lvt = next(v for v, f in models.all_variants().items() if f == 'lvt')
  with pytest.raises(ValueError, match='has no 2D -> 3D inflation'):
    convert.from_pytorch_2d({}, models.create_model(lvt, num_classes=10))


def test_wrapped_prefixed_pth(tmp_path, gold, model, sd2d):
  path = str(tmp_path / 'mini_2d.pth')  # {'state_dict': {'backbone.<key>': ...}, 'meta'}
  convert.save_state_dict({f'backbone.{k}': v for k, v in reversed(list(sd2d.items()))}, path)
  ours = convert.to_pytorch(convert.from_pytorch_2d(path, model), model)
  want = {k[len('sd3d/'):]: v for k, v in gold.items() if k.startswith('sd3d/backbone.')}
  _assert_bits(ours, want, list(want))


def test_cli_inflate(tmp_path, gold, sd2d):
  from dualformer_jax import model_checkpoint  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / 'mini_2d.safetensors')
  convert.save_state_dict(sd2d, path)
  out = str(tmp_path / 'ckpt')
  result = subprocess.run(
      [sys.executable, '-m', 'dualformer_jax.convert', 'inflate', '--input', path,
       '--variant', 'mini', '--num_classes', '10', '--output', out],
      cwd=conftest.REPO, capture_output=True, text=True, env=dict(os.environ), timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'inflated 13, loaded as-is 143, set to constants 4' in result.stdout
  model, variables = model_checkpoint.load_model(out)
  ours = convert.to_pytorch(variables, model)
  want = {k[len('sd3d/'):]: v for k, v in gold.items() if k.startswith('sd3d/backbone.')}
  _assert_bits(ours, want, list(want))
