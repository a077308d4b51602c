"""Model structure, numerics options and input checks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualformer_jax import convert
from dualformer_jax import flops
from dualformer_jax import models


def random_variables(model, seed=0):
  """Variables with realistic scales, made on the host (no init compilation)."""
  rng = np.random.default_rng(seed)
  shapes = convert.variable_shapes(model)

  def make(path, leaf):
    name = path[-1].key
    if name == 'num_batches_tracked':
      return jnp.zeros(leaf.shape, leaf.dtype)
    if name in ('scale', 'var'):
      return jnp.asarray(1 + 0.1 * rng.standard_normal(leaf.shape), leaf.dtype)
    return jnp.asarray(0.05 * rng.standard_normal(leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(make, shapes)


@pytest.mark.parametrize('variant', ['tiny', 'small', 'base'])
def test_official_parameter_counts_and_flops(variant):
  model = models.create_model(variant, num_classes=400)
  params = flops.count_parameters(model)
  assert params['backbone'] == models.OFFICIAL_BACKBONE_PARAMS[variant]
  gflops = flops.count_flops(model, (32, 224, 224)).total / 1e9
  assert abs(gflops / models.OFFICIAL_GFLOPS[variant] - 1) < 0.03


def test_tiny_flop_breakdown_matches_official():
  count = flops.count_flops(models.create_model('tiny'), (32, 224, 224))
  assert count.linear / 1e9 == pytest.approx(41.79, abs=0.01)
  assert count.attention / 1e9 == pytest.approx(16.35, abs=0.01)
  assert count.conv / 1e9 == pytest.approx(1.72, abs=0.01)
  assert count.layer_norm / 1e9 == pytest.approx(0.23, abs=0.01)


def test_flops_command_line(capsys):
  flops.main(['--variant', 'tiny', '--clip', '32,224,224'])
  out = capsys.readouterr().out
  assert 'backbone 21,767,360' in out and '60.09' in out


def test_variant_table_and_factory():
  tiny = models.create_model('tiny', num_classes=7, drop_path_rate=0.2)
  assert (tiny.embed_dims, tiny.num_heads, tiny.depths) == (
      (64, 128, 256, 512), (2, 4, 8, 16), (2, 2, 10, 4))
  assert tiny.num_classes == 7 and tiny.drop_path_rate == 0.2
  with pytest.raises(ValueError, match="unknown model variant 'huge'.*tiny"):
    models.create_model('huge')
  with pytest.raises(ValueError, match="did you mean 'tiny'"):
    models.create_model('tinyy')
  with pytest.raises(TypeError, match='emb_dims'):
    models.create_model('tiny', emb_dims=(1, 2, 3, 4))
  config = models.model_config(tiny)
  assert config['family'] == 'dualformer'
  assert models.model_from_config(config).embed_dims == tiny.embed_dims
  del config['family']  # checkpoints written before model families existed
  assert models.model_from_config(config) == models.model_from_config(models.model_config(tiny))


@pytest.mark.parametrize('shape, message', [
    ((1, 8, 224, 200, 3), r'multiples of \(8, 224, 224\)'),
    ((1, 8, 224, 224, 1), r'\[batch, T, H, W, 3\]'),
    ((8, 224, 224, 3), r'got \(8, 224, 224, 3\)'),
    ((1, 6, 224, 224, 3), r'video_size \(8, 224, 224\)'),
])
def test_bad_clip_shapes_name_the_expected_shape(shape, message):
  model = models.create_model('mini', num_classes=10)
  with pytest.raises(ValueError, match=message):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros(shape))


def test_bfloat16_compute_stays_close_to_float32(golden, golden_state_dict):
  clips = jnp.asarray(golden['input'].astype(np.float32).transpose(0, 2, 3, 4, 1))
  f32 = models.create_model('mini', num_classes=10)
  bf16 = models.create_model('mini', num_classes=10, dtype=jnp.bfloat16)
  variables = convert.from_pytorch(golden_state_dict, f32)
  logits_bf16 = jax.jit(lambda v, x: bf16.apply(v, x))(variables, clips)
  assert logits_bf16.dtype == jnp.float32  # logits come back in float32
  expected = golden['logits']
  error = np.max(np.abs(np.asarray(logits_bf16) - expected)) / np.max(np.abs(expected))
  assert error < 2e-2
  assert error > 1e-6  # it really computed in bfloat16
  # Parameters stay float32 (param_dtype), compute is bfloat16.
  shapes = convert.variable_shapes(bf16)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(shapes['params']))


@pytest.fixture(scope='module')
def nano_setup():
  model = models.create_model('nano', num_classes=8, drop_path_rate=0.0,
                              head_dropout_rate=0.0)
  variables = random_variables(model)
  clips = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 64, 64, 3))
  labels = jnp.array([3, 5])
  return model, variables, clips, labels


def _loss_and_grads(model, variables, clips, labels):
  def loss_fn(params):
    logits, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                            clips, train=True, mutable=['batch_stats'],
                            rngs={'dropout': jax.random.PRNGKey(0)})
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels])
  return jax.jit(jax.value_and_grad(loss_fn))(variables['params'])


def test_remat_changes_no_output_or_gradient(nano_setup):
  model, variables, clips, labels = nano_setup
  loss, grads = _loss_and_grads(model, variables, clips, labels)
  loss_remat, grads_remat = _loss_and_grads(model.clone(remat=True), variables, clips, labels)
  assert float(loss) == pytest.approx(float(loss_remat), rel=1e-6)
  flat, flat_remat = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_remat)
  assert len(flat) == len(flat_remat) > 50
  for g, g_remat in zip(flat, flat_remat):  # equal up to float32 rounding
    np.testing.assert_allclose(g, g_remat, rtol=1e-4, atol=1e-5 * float(jnp.abs(g).max()))
  assert float(jnp.abs(grads['backbone']['block_0_1']['attn']['sr']['kernel']).max()) > 0


def test_dropout_and_stochastic_depth(nano_setup):
  model, variables, clips, _ = nano_setup
  noisy = model.clone(drop_rate=0.1, attn_drop_rate=0.1, drop_path_rate=0.3,
                      head_dropout_rate=0.5)

  @jax.jit
  def run(key):
    train, _ = noisy.apply(variables, clips, train=True, mutable=['batch_stats'],
                           rngs={'dropout': key})
    return train, noisy.apply(variables, clips, train=False), model.apply(variables, clips)

  a, eval_noisy, eval_plain = run(jax.random.PRNGKey(0))
  b, _, _ = run(jax.random.PRNGKey(1))
  np.testing.assert_array_equal(eval_noisy, eval_plain)  # no randomness in eval mode
  assert not np.allclose(a, b)  # different dropout keys, different outputs
  # Drop-path rates rise linearly over the blocks, as in the official model.
  rates = np.linspace(0, 0.3, sum(noisy.depths))
  assert rates[0] == 0 and rates[-1] == pytest.approx(0.3)
