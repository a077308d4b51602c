"""The CPU and the standard (GPU/TPU) formulations compute the same model.

`models/formulations.py` picks, at trace time, either the CPU formulations (chunked
attention loop, hand-written VJPs) or the standard ones (one batched attention, autodiff,
a grouped convolution). Both must reproduce the official golden and give the same
gradients; the attention loop is forced into several chunks here so that it runs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualformer_jax import convert
from dualformer_jax import models
from dualformer_jax.models import formulations
from dualformer_jax.models import layers
from dualformer_jax.models.dualformer import attention


def rel_err(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope='module')
def mini(golden, golden_state_dict):
  model = models.create_model('mini', num_classes=int(golden['classes']),
                              drop_path_rate=0.0, head_dropout_rate=0.0)
  variables = convert.from_pytorch(golden_state_dict, model)
  clips = jnp.asarray(golden['input'].astype(np.float32).transpose(0, 2, 3, 4, 1))
  return model, variables, clips


def loss_and_grads(model, variables, clips, choice):
  labels = jnp.arange(clips.shape[0]) % model.num_classes

  def loss_fn(params):
    logits, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                            clips, train=True, mutable=['batch_stats'])
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
    return loss, logits

  with formulations.use(choice):  # a fresh jit per call: traced under `choice`
    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    text = step.lower(variables['params']).as_text()
    (loss, logits), grads = step(variables['params'])
  return float(loss), logits, grads, text


def test_both_formulations_reproduce_golden_and_share_gradients(mini, golden, monkeypatch):
  model, variables, clips = mini
  # Small enough that every local-window and pyramid attention runs as a loop of chunks.
  monkeypatch.setattr(attention, 'CPU_CHUNK_BYTES', 4096)
  monkeypatch.setattr(attention, 'MIN_CHUNK_QUERIES', 1)
  # ...and every MLP as a loop over chunks of tokens.
  monkeypatch.setattr(layers, 'MLP_CHUNK_MIN_TOKENS', 1)
  monkeypatch.setattr(layers, 'MLP_CHUNK_BYTES', 4096)
  results = {}
  for choice in ('cpu', 'standard'):
    results[choice] = loss_and_grads(model, variables, clips, choice)
    # Train-mode logits (BatchNorm on batch statistics) of the official model.
    assert rel_err(results[choice][1], golden['logits_train']) < 1e-4, choice
  (loss_cpu, _, grads_cpu, text_cpu), (loss_std, _, grads_std, text_std) = (
      results['cpu'], results['standard'])
  # The two paths really differ: the chunk loops, and the grouped convolution of the PEG.
  assert 'while' in text_cpu and 'convolution' not in text_cpu
  assert 'while' not in text_std and 'convolution' in text_std
  assert loss_cpu == pytest.approx(loss_std, rel=1e-6)
  flat_cpu = jax.tree_util.tree_leaves_with_path(grads_cpu)
  flat_std = dict(jax.tree_util.tree_leaves_with_path(grads_std))
  scale = max(float(jnp.abs(g).max()) for _, g in flat_cpu)
  for path, g in flat_cpu:
    err = float(jnp.abs(g - flat_std[path]).max())
    assert err < 1e-4 * max(float(jnp.abs(g).max()), 1e-3 * scale), jax.tree_util.keystr(path)


def test_choice_comes_from_the_environment_and_is_validated(monkeypatch):
  monkeypatch.setenv(formulations.ENV_VAR, 'standard')
  assert formulations.active() == 'standard'
  monkeypatch.setenv(formulations.ENV_VAR, 'auto')
  assert formulations.active() == ('cpu' if jax.default_backend() == 'cpu' else 'standard')
  with formulations.use('cpu'):
    assert formulations.cpu()
  monkeypatch.setenv(formulations.ENV_VAR, 'gpu')
  with pytest.raises(ValueError, match='DUALFORMER_JAX_FORMULATIONS'):
    formulations.cpu()


def test_mobile_former_3d_formulations_share_gradients_and_statistics():
  """MF-3D's CPU formulations (strided shifted-sum depthwise, BatchNorm and dynamic-ReLU
  sums as products with ones) against autodiff of the grouped convolution."""
  model = models.create_model('mobile_former_3d_mini', num_classes=5, drop_path_rate=0.0,
                              head_dropout_rate=0.0)
  clips = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 24, 24, 3))  # [b, t, h, w, c]
  variables = model.init(jax.random.PRNGKey(0), clips, train=False)
  labels = jnp.array([1, 3, 0, 4])

  def loss_fn(params):
    logits, updates = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                                  clips, train=True, mutable=['batch_stats'])
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
    return loss, updates['batch_stats']

  results = {}
  for choice in ('cpu', 'standard'):
    with formulations.use(choice):
      step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
      text = step.lower(variables['params']).as_text()
      results[choice] = step(variables['params']), text
  ((loss_cpu, stats_cpu), grads_cpu), text_cpu = results['cpu']
  ((loss_std, stats_std), grads_std), text_std = results['standard']
  assert 'convolution' in text_std and text_cpu.count('convolution') < text_std.count(
      'convolution')
  assert loss_cpu == pytest.approx(loss_std, rel=1e-5)
  for path, s in jax.tree_util.tree_leaves_with_path(stats_cpu):
    expected = dict(jax.tree_util.tree_leaves_with_path(stats_std))[path]
    np.testing.assert_allclose(s, expected, rtol=1e-4, atol=1e-5,
                               err_msg=jax.tree_util.keystr(path))
  flat_std = dict(jax.tree_util.tree_leaves_with_path(grads_std))
  scale = max(float(jnp.abs(g).max()) for g in flat_std.values())
  for path, g in jax.tree_util.tree_leaves_with_path(grads_cpu):
    err = float(jnp.abs(g - flat_std[path]).max())
    # Sums in another order differ by float32 rounding (~1e-7 at the stem); the head's
    # BatchNorm1d over a batch of 4 amplifies it, so 1e-3 here (a wrong term is O(1)).
    assert err < 1e-3 * max(float(jnp.abs(g).max()), 1e-2 * scale), jax.tree_util.keystr(path)
