"""LVT: parity with the official model (golden file), conversion, sizes, FLOPs, sharding."""

import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conftest
from dualformer_jax import convert
from dualformer_jax import models
from dualformer_jax import sharding
from dualformer_jax.models import conversion_rules as rules
from dualformer_jax.models import lvt
from dualformer_jax.models.lvt import shifts

GOLDEN = conftest.REFERENCE_DIR / 'lvt' / 'lvt_mini_golden.npz'
# Golden configuration -> its prefix in the golden file.
CONFIGS = {'lvt_mini': '', 'lvt_mini_sharegate': 'mini_sharegate/'}
OFFICIAL_LISTINGS = {'lvt_k400': 'k400', 'lvt_k600': 'k600', 'lvt_ssv2': 'ssv2'}
PARITY_RTOL = 1e-4


def rel_error(actual, expected) -> float:
  """Largest absolute difference relative to the largest reference magnitude."""
  expected = np.asarray(expected, np.float64)
  return float(np.max(np.abs(np.asarray(actual, np.float64) - expected))
               / np.max(np.abs(expected)))


def lvt_listing(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
  """`lvt/state_dicts/<name>.txt` -> {key: (shape, dtype)}."""
  return conftest.official_listing(name, 'lvt')


@pytest.fixture(scope='module')
def golden():
  return conftest.load_golden(GOLDEN)


@pytest.fixture(scope='module')
def clips(golden):
  """The golden input as channels-last float32 `[2, 16, 64, 64, 3]`."""
  return jnp.asarray(golden['input'].astype(np.float32).transpose(0, 2, 3, 4, 1))


def state_dict_of(golden, config):
  prefix = CONFIGS[config] + 'sd/'
  return {k[len(prefix):]: v for k, v in golden.items() if k.startswith(prefix)}


def _golden_run(config, golden, clips):
  """Model, converted variables, logits and intermediates of one golden configuration."""
  model = models.create_model(config, num_classes=int(golden[CONFIGS[config] + 'classes']))
  state_dict = state_dict_of(golden, config)
  variables = convert.from_pytorch(state_dict, model)  # dispatches on the family

  def forward(v, x):
    logits, state = model.apply(v, x, mutable=['intermediates'])
    return logits, state['intermediates'], model.apply(v, x, method='extract_features')

  logits, inter, features = jax.jit(forward)(variables, clips)
  return dict(config=config, model=model, state_dict=state_dict, variables=variables,
              logits=logits, inter=inter, feature_map=features, prefix=CONFIGS[config])


@pytest.fixture(scope='module')
def runs(golden, clips):
  return {config: _golden_run(config, golden, clips) for config in CONFIGS}


@pytest.fixture(params=sorted(CONFIGS))
def run(request, runs):
  return runs[request.param]


@pytest.fixture(scope='module')
def mini_run(runs):
  """The K400-like golden configuration (separate q and k gates, intermediates)."""
  return runs['lvt_mini']


# Layouts of the golden intermediates (ours are `[b, t, h, w, ...]`).
def rows_bt(a):
  """-> `(b * t, h * w, ...)` (frames as rows)."""
  a = np.asarray(a)
  return a.reshape(a.shape[0] * a.shape[1], a.shape[2] * a.shape[3], *a.shape[4:])


def rows_bn(a):
  """-> `(b * h * w, t, ...)` (token positions as rows, sequences over time)."""
  a = np.asarray(a)
  b, t, h, w = a.shape[:4]
  a = a.reshape(b, t, h * w, *a.shape[4:]).swapaxes(1, 2)
  return a.reshape(b * h * w, t, *a.shape[3:])


def heads_first(a, heads):
  """`(rows, L, c)` -> `(rows, heads, L, e)`."""
  return a.reshape(*a.shape[:2], heads, -1).transpose(0, 2, 1, 3)


# Parity with the official model.


def test_golden_logits_and_features(run, golden):
  prefix = run['prefix']
  expected = golden[prefix + 'logits']
  error = rel_error(run['logits'], expected)
  assert error < PARITY_RTOL, error
  assert rel_error(run['logits'], golden[prefix + 'logits_float64']) < PARITY_RTOL
  features = run['inter']['frame_features'][0]  # [b, t, c] per-frame token means
  assert rel_error(features, golden[prefix + 'features']) < PARITY_RTOL
  # The family's own function gives the same variables as the shared dispatch.
  direct = lvt.FAMILY.from_pytorch(run['state_dict'], run['model'])
  for a, b in zip(jax.tree_util.tree_leaves(direct), jax.tree_util.tree_leaves(
      run['variables'])):
    np.testing.assert_array_equal(a, b)


def test_golden_intermediates(mini_run, golden):
  """Every intermediate of the golden file (it has them for lvt_mini)."""
  run = mini_run
  inter, backbone = run['inter'], run['inter']['backbone']
  block0 = backbone['block_0']
  heads = run['model'].num_heads
  ours = {
      'patch_embed': rows_bt(backbone['patch_embed_out'][0]),
      'block_in': rows_bt(backbone['block_in'][0]),
      'block0/temporal_attn': rows_bn(block0['temporal_attn_branch'][0]),
      'block0/spatial_attn': rows_bt(block0['spatial_attn_branch'][0]),
      'block0/mlp': rows_bt(block0['mlp_branch'][0]),
      'block0': rows_bt(block0['out'][0]),
      'block1': rows_bt(backbone['block_1']['out'][0]),
      'pooled': inter['head']['pooled'][0],
      # The spatial shift acts in the temporal attention, the temporal one in the spatial.
      'block0/spatial_shift_k_in': heads_first(
          rows_bn(block0['temporal_attn']['shift_k_in'][0]), heads),
      'block0/spatial_shift_k_out': heads_first(
          rows_bn(block0['temporal_attn']['shift_k_out'][0]), heads),
      'block0/temporal_shift_k_in': heads_first(
          rows_bt(block0['attn']['shift_k_in'][0]), heads),
      'block0/temporal_shift_k_out': heads_first(
          rows_bt(block0['attn']['shift_k_out'][0]), heads),
      'block0/temporal_attn_q_gate_logits': rows_bn(
          block0['temporal_attn']['q_gate_logits'][0]),
      'block0/spatial_attn_q_gate_logits': rows_bt(block0['attn']['q_gate_logits'][0]),
  }
  for name, value in ours.items():
    expected = golden['inter/' + name]
    assert value.shape == expected.shape, name
    assert rel_error(value, expected) < PARITY_RTOL, (name, rel_error(value, expected))
  features = run['feature_map']  # extract_features
  assert features.shape == (2, 16, 5, 5, 64)  # [b, t, G, G, c]
  assert rel_error(rows_bt(features), golden['inter/final_norm']) < PARITY_RTOL


def test_shifts_reproduce_the_golden_bit_for_bit(golden):
  """Our shifts applied to the official shift inputs give exactly the official outputs."""
  b, t, g, heads, e = 2, 16, 5, 4, 16
  # Spatial shift (temporal attention): (b * 25 + n, head, t, j) -> [b, t, h, w, c].
  to_grid = lambda a: a.reshape(b, g, g, heads, t, e).transpose(0, 4, 1, 2, 3, 5).reshape(
      b, t, g, g, heads * e)
  k_in = to_grid(golden['inter/block0/spatial_shift_k_in'])
  k_out = to_grid(golden['inter/block0/spatial_shift_k_out'])
  ours = np.asarray(jax.jit(shifts.spatial_shift, static_argnums=1)(k_in, 1))
  assert not np.array_equal(k_in, k_out)
  np.testing.assert_array_equal(ours, k_out)
  # Temporal shift (spatial attention): (b * 16 + t, head, n, j) -> [b, t, h, w, c].
  to_grid = lambda a: a.reshape(b, t, heads, g, g, e).transpose(0, 1, 3, 4, 2, 5).reshape(
      b, t, g, g, heads * e)
  k_in = to_grid(golden['inter/block0/temporal_shift_k_in'])
  k_out = to_grid(golden['inter/block0/temporal_shift_k_out'])
  ours = np.asarray(jax.jit(shifts.temporal_shift, static_argnums=(1, 2))(k_in, 8, 4))
  assert not np.array_equal(k_in, k_out)
  np.testing.assert_array_equal(ours, k_out)


def test_shift_quirks():
  """Axial groups zero-fill at the border, diagonal ones keep their value; the temporal
  shift never crosses a segment boundary."""
  x = jnp.arange(1, 1 + 3 * 3 * 32, dtype=jnp.float32).reshape(1, 1, 3, 3, 32) + 0.5
  y = np.asarray(jax.jit(shifts.spatial_shift, static_argnums=1)(x, 1))  # groups of 2
  x = np.asarray(x)
  assert y[0, 0, 2, 1, 0] == 0 and y[0, 0, 1, 1, 0] == x[0, 0, 2, 1, 0]  # g0 from row + 1
  assert y[0, 0, 0, 0, 8] == x[0, 0, 0, 0, 8]  # g4 from (-1, -1): off grid, unshifted
  assert y[0, 0, 1, 1, 8] == x[0, 0, 0, 0, 8]
  np.testing.assert_array_equal(y[..., 16:], x[..., 16:])  # half the channels untouched
  frames = jnp.broadcast_to(jnp.arange(8.0)[None, :, None, None, None] + 1, (1, 8, 1, 1, 8))
  z = jax.jit(shifts.temporal_shift, static_argnums=(1, 2))(frames, 8, 4)
  z = np.asarray(z)[0, :, 0, 0]
  np.testing.assert_array_equal(z[:, 0], [2, 3, 4, 0, 6, 7, 8, 0])  # from the next frame
  np.testing.assert_array_equal(z[:, 1], [0, 1, 2, 3, 0, 5, 6, 7])  # from the previous
  np.testing.assert_array_equal(z[:, 2:], np.asarray(frames)[0, :, 0, 0, 2:])


# Conversion.


def test_round_trip_is_bit_exact(run):
  exported = lvt.FAMILY.to_pytorch(run['variables'], run['model'])
  assert exported.keys() == run['state_dict'].keys()
  for key, value in run['state_dict'].items():
    assert exported[key].dtype == value.dtype, key
    assert np.array_equal(exported[key], value), key
  assert convert.to_pytorch(run['variables'], run['model']).keys() == exported.keys()


@pytest.mark.parametrize('variant', sorted(OFFICIAL_LISTINGS))
def test_official_models_export_layout_and_parameter_counts(variant):
  """Keys and shapes of the official state dicts, and the official parameter counts
  (from `eval_shape`: nothing is materialized)."""
  official = lvt.FAMILY.official[variant]
  model = models.create_model(variant, num_classes=official['classes'])
  shapes = models.variable_shapes(model)
  exported = {}
  for path, leaf in rules.flatten(shapes['params']).items():
    key, _ = lvt.conversion.official_key(path)
    exported[key] = (rules.torch_shape(path, leaf, lvt.conversion.official_key),
                     str(leaf.dtype))
  assert exported == lvt_listing(OFFICIAL_LISTINGS[variant])
  assert set(shapes) == {'params'}  # no BatchNorm, no buffers
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))
  assert count(shapes) == official['params']
  assert count(shapes) - count(shapes['params']['head']['new_fc']) == official['params_used']
  assert lvt.conversion.infer_variant(
      {k: np.broadcast_to(np.float32(0), s) for k, (s, _) in exported.items()}) == variant


def test_golden_configurations_sizes_and_variants(golden):
  for config in CONFIGS:
    model = models.create_model(config, num_classes=10)
    shapes = models.variable_shapes(model)
    total = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
    assert total == lvt.variants.MINI_PARAMS[config]
    state_dict = state_dict_of(golden, config)
    assert total == sum(v.size for v in state_dict.values())
    assert lvt.conversion.infer_variant(state_dict) == config
    assert models.registry.head_classes(lvt.FAMILY, state_dict) == 10


def test_infer_variant_errors():
  listing = lvt_listing('k600')
  sd = {k: np.broadcast_to(np.float32(0), s) for k, (s, _) in listing.items()}
  sd['consensus.mlp_head.4.weight'] = np.zeros((157, 768), np.float32)  # e.g. Charades
  with pytest.raises(ValueError, match="lvt_k600.*lvt_ssv2"):
    lvt.conversion.infer_variant(sd)
  with pytest.raises(ValueError, match='LVT checkpoint'):
    lvt.conversion.infer_variant({'backbone.norm.weight': np.zeros(3)})


def test_strict_errors_name_keys_and_shapes(golden, mini_run):
  model = mini_run['model']
  broken = state_dict_of(golden, 'lvt_mini')
  broken['base_model.blocks.1.mlp.fc1.weight'] = np.zeros((256, 65), np.float32)
  del broken['new_fc.bias']
  broken['base_model.pos_embed'] = np.zeros((1, 25, 64), np.float32)
  with pytest.raises(rules.ConversionError) as error:
    lvt.FAMILY.from_pytorch(broken, model)
  message = str(error.value)
  assert 'base_model.blocks.1.mlp.fc1.weight: checkpoint (256, 65), model (256, 64)' in message
  assert 'missing keys (1): new_fc.bias' in message
  assert 'unexpected keys (1): base_model.pos_embed' in message


def test_reinit_head_for_other_classes(golden, caplog):
  state_dict = state_dict_of(golden, 'lvt_mini')
  model = models.create_model('lvt_mini', num_classes=7)
  with pytest.raises(rules.ConversionError, match='reinit_head'):
    lvt.FAMILY.from_pytorch(state_dict, model)
  with caplog.at_level(logging.WARNING):
    variables = lvt.FAMILY.from_pytorch(state_dict, model, reinit_head=True)
  assert 'consensus.mlp_head.4' in caplog.text and 'new_fc' in caplog.text
  params = variables['params']
  assert params['head']['fc2']['kernel'].shape == (96, 7)
  assert params['head']['new_fc']['kernel'].shape == (64, 7)
  assert 0.015 < float(np.std(params['head']['fc2']['kernel'])) < 0.025  # trunc_normal(0.02)
  assert 0.0007 < float(np.std(params['head']['new_fc']['kernel'])) < 0.0013  # normal(0.001)
  exported = lvt.FAMILY.to_pytorch(variables, model)
  for key, value in state_dict.items():  # backbone and the fitting head layers: loaded
    if not key.startswith(('consensus.mlp_head.4.', 'new_fc.')):
      np.testing.assert_array_equal(exported[key], value)


# Sizes and FLOPs.


def test_flops_match_the_official_count():
  model = models.create_model('lvt_k400', num_classes=400)
  flops = lvt.FAMILY.count_flops(model, (16, 224, 224))
  assert round(sum(flops.values()) / 1e9, 2) == 265.12
  breakdown = {k: round(v / 1e9, 2) for k, v in flops.items()}
  assert breakdown == {'linear': 254.55, 'attention': 7.27, 'conv': 2.84, 'layer_norm': 0.45}
  for variant in ('lvt_k600', 'lvt_ssv2'):
    classes = lvt.FAMILY.official[variant]['classes']
    other = lvt.FAMILY.count_flops(models.create_model(variant, num_classes=classes),
                                   (16, 224, 224))
    assert round(sum(other.values()) / 1e9, 2) == lvt.FAMILY.official[variant]['gflops']


# The family interface.


def test_family_registration_and_config_round_trip():
  model = models.create_model('lvt_ssv2', num_classes=174, drop_path_rate=0.1)
  assert models.family_of(model) is lvt.FAMILY and lvt.FAMILY.name == 'lvt'
  assert sorted(lvt.FAMILY.variants) == sorted(
      ['lvt_k400', 'lvt_k600', 'lvt_ssv2', 'lvt_mini', 'lvt_mini_sharegate', 'lvt_nano'])
  assert lvt.FAMILY.mean == lvt.FAMILY.std == (127.5, 127.5, 127.5)  # (x / 255 - .5) / .5
  assert models.input_shape(model) == (16, 224, 224)
  config = models.model_config(model)
  assert config['family'] == 'lvt' and config['num_classes'] == 174
  rebuilt = models.model_from_config(config)
  assert all(getattr(rebuilt, f) == getattr(model, f) for f in lvt.FAMILY.architecture_fields)
  assert (model.share_gate, model.shift_div, model.num_segments) == (True, 4, 16)
  assert (model.drop_rate, model.attn_drop_rate, model.head_dropout_rate) == (0, 0, 0.5)


def test_every_parameter_has_logical_axes():
  model = models.create_model('lvt_mini', num_classes=10)
  boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                            jnp.zeros((1, 16, 64, 64, 3))))
  leaves = jax.tree_util.tree_leaves(boxed['params'],
                                     is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert leaves and all(isinstance(x, nn.Partitioned) for x in leaves)
  names = {n for x in leaves for n in x.names if n is not None}
  assert names <= {name for name, _ in sharding.DEFAULT_RULES}


def test_official_initialization():
  """Section 10 of the fact sheet, on a small LVT (depth 1, 8 x 16 x 16 clips)."""
  model = models.create_model('lvt_mini', num_classes=10, depth=1, video_size=(8, 16, 16))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8, 16, 16, 3)))
  params = nn.unbox(params)['params']
  std = lambda a: float(np.std(np.asarray(a)))
  backbone, block = params['backbone'], params['backbone']['block_0']
  assert std(backbone['patch_embed']['kernel']) == pytest.approx(np.sqrt(2 / (16 * 16 * 64)),
                                                                  rel=0.03)
  assert std(block['mlp']['dwconv']['kernel']) == pytest.approx(np.sqrt(2 / 9), rel=0.1)
  qkv = np.asarray(block['attn']['qkv']['kernel'])
  assert std(qkv) == pytest.approx(0.02, rel=0.05)
  assert np.abs(qkv).max() > 0.06  # truncated at +-2 absolute, not at 2 std
  assert std(block['temporal_attn']['q_gate']['kernel']) == pytest.approx(0.02, rel=0.15)
  assert std(params['head']['new_fc']['kernel']) == pytest.approx(0.001, rel=0.15)
  assert not np.any(np.asarray(backbone['temp_embed']))
  assert np.all(np.asarray(block['norm1']['scale']) == 1)
  biases = [v for path, v in rules.flatten(params).items() if path[-1] == 'bias']
  assert len(biases) == 21 and not any(np.any(np.asarray(b)) for b in biases)  # all zero


def test_nano_linear_init_matches_the_official_q_scale():
  """lvt_nano's Linears start at 0.02 sqrt(512 / 64): its q has the 512-wide model's std."""
  model = models.create_model('lvt_nano', num_classes=8)
  assert model.linear_init_std == pytest.approx(0.02 * np.sqrt(8))
  clips = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 64, 64, 3))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), clips)
  params = nn.unbox(variables)['params']
  block = params['backbone']['block_0']
  for kernel in (block['attn']['qkv']['kernel'], block['mlp']['fc1']['kernel'],
                 params['head']['fc1']['kernel']):
    assert float(np.std(np.asarray(kernel))) == pytest.approx(0.0566, rel=0.05)
  assert float(np.std(np.asarray(params['head']['new_fc']['kernel']))) == pytest.approx(
      0.001, rel=0.15)  # new_fc keeps its own std
  # q at init, [b, t, h, w, 3c] -> q [.., c]: std 8 x 0.0566 = 0.45, as 0.02 sqrt(512).
  _, state = model.apply(variables, clips, capture_intermediates=True,
                         mutable=['intermediates'])
  qkv = state['intermediates']['backbone']['block_0']['attn']['qkv']['__call__'][0]
  q = np.asarray(qkv[..., :64])
  assert float(np.std(q)) == pytest.approx(0.02 * np.sqrt(512), rel=0.15)


def test_bad_clip_shape_names_the_expected_shape(mini_run):
  model, variables = mini_run['model'], mini_run['variables']
  with pytest.raises(ValueError, match=r'\[batch, 16, 64, 64, 3\]'):
    model.apply(variables, jnp.zeros((1, 8, 64, 64, 3)))


# Numerics options and sharding.


def test_bfloat16_stays_close_to_float32(mini_run, clips):
  model, variables = mini_run['model'], mini_run['variables']
  bf16 = model.clone(dtype=jnp.bfloat16)
  logits = jax.jit(lambda v, x: bf16.apply(v, x))(variables, clips)
  assert logits.dtype == jnp.float32
  error = rel_error(logits, mini_run['logits'])
  assert 1e-6 < error < 2e-2, error


LABELS = np.array([3, 7])


def cross_entropy(logits):
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), LABELS[:, None], 1))


def _loss_and_grads(model, variables, clips):
  loss_fn = lambda params: cross_entropy(model.apply({'params': params}, clips, train=True))
  return jax.jit(jax.value_and_grad(loss_fn))(variables['params'])


def test_remat_gives_the_same_loss_and_gradients(mini_run, clips):
  """Train mode with every dropout rate at 0 (no randomness): the loss is the eval-mode
  loss, and recomputing the blocks in the backward pass changes no gradient."""
  model = mini_run['model'].clone(head_dropout_rate=0.0)
  loss, grads = _loss_and_grads(model, mini_run['variables'], clips)
  loss_remat, grads_remat = _loss_and_grads(model.clone(remat=True), mini_run['variables'],
                                            clips)
  assert float(loss) == pytest.approx(float(cross_entropy(mini_run['logits'])), rel=1e-6)
  assert float(loss) == pytest.approx(float(loss_remat), rel=1e-6)
  flat, flat_remat = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_remat)
  assert len(flat) == len(flat_remat) == 71
  for g, g_remat in zip(flat, flat_remat):
    np.testing.assert_allclose(g, g_remat, rtol=1e-4, atol=1e-5 * float(jnp.abs(g).max()))
  assert float(jnp.abs(grads['backbone']['block_0']['attn']['q_gate']['kernel']).max()) > 0
  assert not np.any(np.asarray(grads['head']['new_fc']['kernel']))  # never called


def test_sharded_mesh_gives_single_device_logits(mini_run, clips):
  model, variables = mini_run['model'], mini_run['variables']
  batch = jnp.concatenate([clips, clips])  # 4 clips: the batch splits over data x fsdp
  single = np.concatenate([mini_run['logits']] * 2)  # one device's logits
  mesh = sharding.create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch[:1]))
  shardings = sharding.logical_to_shardings(boxed, mesh)
  placed = jax.device_put(variables, {'params': shardings['params'], 'batch_stats': {}})
  specs = [leaf.sharding.spec for leaf in jax.tree_util.tree_leaves(placed)]
  assert any(any(axis is not None for axis in spec) for spec in specs)  # really sharded
  fc1 = placed['params']['backbone']['block_0']['mlp']['fc1']['kernel']  # [embed, mlp]
  assert fc1.addressable_shards[0].data.shape == (32, 128)
  with mesh, nn.logical_axis_rules(sharding.DEFAULT_RULES):
    x = jax.device_put(batch, sharding.batch_sharding(mesh, batch.ndim))
    logits = jax.jit(lambda v, x: model.apply(v, x))(placed, x)
  assert len(logits.sharding.device_set) == 8
  np.testing.assert_allclose(logits, single, rtol=1e-5, atol=1e-6)
