"""Checkpoint conversion: file formats, the official key listing, errors, the CLI."""

import logging
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import official_listing
from dualformer_jax import convert
from dualformer_jax import model_checkpoint
from dualformer_jax import models


@pytest.fixture(scope='module')
def mini():
  return models.create_model('mini', num_classes=10)


def _zeros_like_official(name: str, num_classes: int = 400) -> dict[str, np.ndarray]:
  """A state dict with the official keys, shapes and dtypes of `state_dicts/<name>.txt`."""
  rng = np.random.default_rng(0)
  out = {}
  for key, (shape, dtype) in official_listing(name).items():
    if dtype == 'int64':
      out[key] = np.asarray(rng.integers(0, 100), np.int64).reshape(shape)
    else:
      out[key] = rng.standard_normal(shape).astype(np.float32)
  return out


@pytest.mark.parametrize('variant', ['tiny', 'small', 'base'])
def test_to_pytorch_matches_official_listing(variant):
  """Every official key and shape, num_batches_tracked included; nothing else."""
  model = models.create_model(variant, num_classes=400)
  state_dict = _zeros_like_official(variant)
  variables = convert.from_pytorch(state_dict, model)
  exported = convert.to_pytorch(variables, model)
  listing = official_listing(variant)
  assert set(exported) == set(listing)
  for key, (shape, dtype) in listing.items():
    assert exported[key].shape == shape, key
    assert str(exported[key].dtype) == dtype, key
    assert np.array_equal(exported[key], state_dict[key]), key


def test_layout_transforms(golden_state_dict, mini):
  """Spot-check each kind of transform against the official layout."""
  variables = convert.from_pytorch(golden_state_dict, mini)
  p = variables['params']['backbone']
  np.testing.assert_array_equal(  # Linear: (out, in) -> (in, out)
      p['block_0_0']['attn']['qkv']['kernel'],
      golden_state_dict['backbone.blocks.0.0.attn.qkv.weight'].T)
  np.testing.assert_array_equal(  # Conv3d: (out, in, kd, kh, kw) -> (kd, kh, kw, in, out)
      p['patch_embed_1']['proj']['kernel'][0, 1, 0, 5, 7],
      golden_state_dict['backbone.patch_embeds.1.proj.weight'][7, 5, 0, 1, 0])
  np.testing.assert_array_equal(  # depthwise: (c, 1, kd, kh, kw) -> (kd, kh, kw, c)
      p['block_0_1']['attn']['sr']['kernel'][1, 2, 3, 4],
      golden_state_dict['backbone.blocks.0.1.attn.sr.weight'][4, 0, 1, 2, 3])
  stats = variables['batch_stats']['backbone']['block_1_1']['attn']['lr_bn']
  np.testing.assert_array_equal(stats['var'],
                                golden_state_dict['backbone.blocks.1.1.attn.lr.1.running_var'])


def test_file_formats_round_trip(tmp_path, golden_state_dict, mini):
  variables = convert.from_pytorch(golden_state_dict, mini)
  exported = convert.to_pytorch(variables, mini)
  convert.save_state_dict(exported, tmp_path / 'm.safetensors')
  from_safetensors = convert.from_pytorch(tmp_path / 'm.safetensors', mini)
  torch = pytest.importorskip('torch')
  convert.save_state_dict(exported, tmp_path / 'm.pth')
  checkpoint = torch.load(tmp_path / 'm.pth')
  assert set(checkpoint) == {'state_dict', 'meta'}
  assert checkpoint['state_dict']['backbone.blocks.0.1.attn.lr.1.num_batches_tracked'].dtype \
      == torch.int64
  torch.save(checkpoint['state_dict'], tmp_path / 'bare.pth')  # a bare state dict
  for source in (tmp_path / 'm.pth', tmp_path / 'bare.pth'):
    restored = convert.from_pytorch(source, mini)
    leaves = jax.tree_util.tree_leaves_with_path(restored)
    for path, leaf in leaves:
      expected = from_safetensors
      for k in path:
        expected = expected[k.key]
      np.testing.assert_array_equal(leaf, expected)


def test_missing_unexpected_and_misshaped_keys_are_named(golden_state_dict, mini):
  broken = dict(golden_state_dict)
  del broken['backbone.blocks.1.0.mlp.fc2.bias']
  broken['backbone.extra.weight'] = np.zeros(3, np.float32)
  broken['backbone.norm.weight'] = np.zeros(7, np.float32)
  with pytest.raises(convert.ConversionError) as error:
    convert.from_pytorch(broken, mini)
  message = str(error.value)
  assert 'missing keys (1): backbone.blocks.1.0.mlp.fc2.bias' in message
  assert 'unexpected keys (1): backbone.extra.weight' in message
  assert 'backbone.norm.weight: checkpoint (7,), model (64,)' in message


def test_head_mismatch_fails_or_reinitializes(golden_state_dict, caplog):
  model = models.create_model('mini', num_classes=5)
  with pytest.raises(convert.ConversionError, match='reinit_head'):
    convert.from_pytorch(golden_state_dict, model)
  with caplog.at_level(logging.WARNING):
    variables = convert.from_pytorch(golden_state_dict, model, reinit_head=True)
  assert 're-initializing cls_head.fc_cls' in caplog.text and '10 classes' in caplog.text
  head = variables['params']['head']['fc_cls']
  assert head['kernel'].shape == (64, 5)
  assert np.all(np.asarray(head['bias']) == 0)
  assert 0.005 < float(np.std(head['kernel'])) < 0.015  # normal(0.01) init
  exported = convert.to_pytorch(variables, model)
  for key, value in golden_state_dict.items():  # the backbone is untouched
    if key.startswith('backbone.'):
      np.testing.assert_array_equal(exported[key], value)


def test_to_pytorch_checks_structure(golden_state_dict, mini):
  variables = convert.from_pytorch(golden_state_dict, mini)
  del variables['params']['backbone']['norm']
  with pytest.raises(convert.ConversionError, match='backbone/norm/scale'):
    convert.to_pytorch(variables, mini)


def test_missing_file_and_unknown_format(tmp_path, mini):
  with pytest.raises(FileNotFoundError, match='nope.pth'):
    convert.from_pytorch(tmp_path / 'nope.pth', mini)
  with pytest.raises(ValueError, match='.pth or .safetensors'):
    convert.save_state_dict({}, tmp_path / 'x.bin')


def _cli(*args, cwd):
  return subprocess.run([sys.executable, '-m', 'dualformer_jax.convert', *args], cwd=cwd,
                        capture_output=True, text=True, timeout=600,
                        env={**__import__('os').environ, 'PYTHONPATH': str(
                            __import__('conftest').REPO)})


def test_command_line_both_directions(tmp_path, golden_state_dict):
  torch = pytest.importorskip('torch')
  torch.save({'state_dict': {k: torch.from_numpy(v) for k, v in golden_state_dict.items()},
              'meta': {}}, tmp_path / 'official.pth')
  help_text = _cli('--help', cwd=tmp_path).stdout
  assert 'to-flax' in help_text and 'to-pytorch' in help_text
  result = _cli('to-flax', '--input', 'official.pth', '--variant', 'mini', '--output', 'ours',
                cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert 'mini, 10 classes' in result.stdout
  model, variables = model_checkpoint.load_model(tmp_path / 'ours')
  assert model.num_classes == 10 and model.embed_dims == (16, 32, 48, 64)
  for out in ('back.pth', 'back.safetensors'):
    result = _cli('to-pytorch', '--input', 'ours', '--output', out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    back = convert.load_state_dict(tmp_path / out)
    assert set(back) == set(golden_state_dict)
    for key, value in golden_state_dict.items():
      assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key
  # Refuses to overwrite, names a bad head, and says how to fix it.
  result = _cli('to-flax', '--input', 'official.pth', '--variant', 'mini', '--output', 'ours',
                cwd=tmp_path)
  assert result.returncode != 0 and '--overwrite' in result.stderr
  result = _cli('to-flax', '--input', 'official.pth', '--variant', 'mini', '--num_classes', '3',
                '--output', 'three', cwd=tmp_path)
  assert result.returncode != 0 and 'cls_head.fc_cls.weight' in result.stderr
  assert '--reinit_head' in result.stderr
