"""Our model + converter reproduce the official PyTorch model's outputs (golden file)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualformer_jax import convert
from dualformer_jax import models

RTOL = 1e-4


def relative_error(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope='module')
def outputs(golden, golden_state_dict):
  model = models.create_model('mini', num_classes=int(golden['classes']),
                              drop_path_rate=0.0, head_dropout_rate=0.0)
  variables = convert.from_pytorch(golden_state_dict, model)
  clips = jnp.asarray(golden['input'].astype(np.float32).transpose(0, 2, 3, 4, 1))

  @jax.jit
  def run(variables, clips):
    logits = model.apply(variables, clips, train=False)
    features = model.apply(variables, clips, train=False, method='extract_features')
    logits_train, updates = model.apply(variables, clips, train=True, mutable=['batch_stats'],
                                        rngs={'dropout': jax.random.PRNGKey(0)})
    return logits, features, logits_train, updates['batch_stats']

  logits, features, logits_train, batch_stats = run(variables, clips)
  return dict(model=model, variables=variables, logits=logits, features=features,
              logits_train=logits_train, batch_stats=batch_stats)


def test_eval_logits_and_features(golden, outputs):
  assert outputs['logits'].shape == golden['logits'].shape
  assert relative_error(outputs['logits'], golden['logits']) < RTOL
  features = np.asarray(outputs['features']).transpose(0, 4, 1, 2, 3)  # to [b, c, d, h, w]
  assert features.shape == golden['features'].shape
  assert relative_error(features, golden['features']) < RTOL


def test_train_logits_and_batchnorm_statistics(golden, golden_state_dict, outputs):
  assert relative_error(outputs['logits_train'], golden['logits_train']) < RTOL
  # Train mode differs from eval mode, so the comparison above is not vacuous.
  assert relative_error(golden['logits_train'], golden['logits']) > 1e-3
  updated = convert.to_pytorch({'params': outputs['variables']['params'],
                                'batch_stats': outputs['batch_stats']})
  bn_keys = [k for k in golden if k.startswith('bn_after_train/')]
  assert len(bn_keys) == 4
  for key in bn_keys:
    name = key[len('bn_after_train/'):]
    assert relative_error(updated[name], golden[key]) < RTOL, name
    assert not np.allclose(golden_state_dict[name], golden[key])  # the statistics moved
  counter = 'backbone.blocks.0.1.attn.lr.1.num_batches_tracked'
  assert updated[counter] == golden_state_dict[counter] + 1


def test_round_trip_is_bit_exact(golden_state_dict, outputs):
  state_dict = convert.to_pytorch(outputs['variables'], outputs['model'])
  assert list(state_dict) == sorted(golden_state_dict)
  for key, expected in golden_state_dict.items():
    assert state_dict[key].dtype == expected.dtype, key
    assert state_dict[key].shape == expected.shape, key
    assert np.array_equal(state_dict[key], expected), key
