"""Mobile-Former (official image model) and Mobile-Former-3D (our video reconstruction).

Parity with the official code through its golden file (MF-26M at 96x96, seeded weights),
exact parameter counts and FLOPs of the fact sheet, the two identities that pin the
reconstruction to the image model, sharding, and strict conversion errors.
"""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import conftest
from dualformer_jax import models
from dualformer_jax import sharding
from dualformer_jax.models import conversion_rules
from dualformer_jax.models import formulations
from dualformer_jax.models.mobile_former import conversion
from dualformer_jax.models.mobile_former import flops
from dualformer_jax.models.mobile_former import inflation
from dualformer_jax.models.mobile_former import MobileFormer
from dualformer_jax.models.mobile_former import MobileFormer3D
from dualformer_jax.models.mobile_former import variants

REFERENCE = conftest.REFERENCE_DIR / 'video_mobile_former'
GOLDEN = REFERENCE / 'mobileformer_image_golden.npz'
RTOL = 1e-4


def _rel(actual, expected) -> float:
  """Largest absolute difference relative to the largest reference magnitude."""
  expected = np.asarray(expected, np.float64)
  return float(np.max(np.abs(np.asarray(actual, np.float64) - expected)) /
               max(np.max(np.abs(expected)), 1e-12))


def _listing(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
  """`state_dicts/<name>.txt` (key, shape, dtype) of the official model."""
  return conftest.official_listing(name, 'video_mobile_former')


def _image_arch(variant: str) -> dict:
  kwargs = dict(variants.IMAGE_VARIANTS[variant])
  kwargs.pop('image_size')
  return kwargs


def _random_variables(abstract, seed: int = 0):
  """Random values for a tree of ShapeDtypeStructs (BatchNorm variances positive)."""
  rng = np.random.default_rng(seed)

  def value(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'num_batches_tracked' in name:
      return np.zeros(leaf.shape, leaf.dtype)
    if "'var'" in name:
      return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
    return (0.3 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(value, abstract)


@pytest.fixture(scope='module')
def golden():
  return conftest.load_golden(GOLDEN)


@pytest.fixture(scope='module')
def golden_sd(golden):
  return {k[len('sd/'):]: v for k, v in golden.items() if k.startswith('sd/')}


@pytest.fixture(scope='module')
def image_model(golden):
  return models.create_model('mobile_former_26m', num_classes=int(golden['classes']),
                             image_size=(96, 96))


@pytest.fixture(scope='module')
def image_variables(golden_sd, image_model):
  return conversion.from_pytorch(golden_sd, image_model)


@pytest.fixture(scope='module')
def images(golden):
  return jnp.asarray(golden['input'].astype(np.float32).transpose(0, 2, 3, 1))  # [b, h, w, 3]


def _golden_intermediate(key: str, value: np.ndarray):
  """Golden intermediate `inter/<official name>` -> (our sown path, value in our layout)."""
  name = key[len('inter/'):]
  module, _, what = name.partition('/')
  fixed = {'stem': 'stem_output', 'classifier.conv': 'head/conv_output',
           'classifier.avgpool': 'head/avgpool', 'classifier.fc/in': 'head/fc_in'}
  if name in fixed:
    path = fixed[name]
  else:
    parts = module.split('.')
    if parts[0] == 'features':
      prefix = [f'features_{parts[1]}'] + parts[2:]
    else:
      prefix = parts
    if prefix[-1].startswith('hyper'):
      prefix.append('coefficients')
    path = '/'.join(prefix + ([what] if what else []))
  if value.ndim == 4 and value.shape[-2:] == (1, 1):  # [b, c, 1, 1] -> [b, c]
    value = value[:, :, 0, 0]
  elif what == 'attn_logits':  # [b, heads, m, h, w] -> [b, heads, m, h * w]
    value = value.reshape(*value.shape[:3], -1)
  elif what == 'tokens':  # [m, b, d] -> [b, m, d]
    value = value.transpose(1, 0, 2)
  elif value.ndim == 4:  # [b, c, h, w] -> [b, h, w, c]
    value = value.transpose(0, 2, 3, 1)
  return path, value


# --- Sizes and costs ----------------------------------------------------------------------


def test_image_parameter_counts_are_official():
  for variant, facts in variants.IMAGE_FACTS.items():
    model = models.create_model(variant, num_classes=1000)
    assert flops.count_parameters(model) == facts['params'], variant


@pytest.mark.parametrize('variant', ['mobile_former_3d_s', 'mobile_former_3d_s_t1'])
def test_video_parameter_counts_match_the_cost_table(variant):
  """The proposal's 1G point and its ablation (the others: docs/mobile_former.md)."""
  model = models.create_model(variant, num_classes=400)
  count = flops.count_parameters(model) / 1e6
  assert abs(count - variants.VIDEO_FACTS[variant]['proposal_params_400_m']) <= 0.005


def test_count_flops_matches_the_fact_sheet():
  total = lambda c: sum(c.values())
  macs = lambda c: c['conv'] + c['linear'] + c['attention']
  for variant, facts in variants.IMAGE_FACTS.items():  # section 2.10, to its rounding
    counts = models.family_of_variant(variant).count_flops(
        models.create_model(variant, num_classes=1000), (224, 224))
    assert abs(total(counts) / 1e6 - facts['fvcore_mflops']) <= 0.005, variant
    assert abs(macs(counts) / 1e6 - facts['macs_mflops']) <= 0.005, variant
    assert abs(total(counts) / 1e6 / facts['mflops'] - 1) < 0.01, variant  # the names
  model = models.create_model('mobile_former_294m', num_classes=1000)
  assert macs(flops.count_flops(model, (224, 224))) == 286_732_160  # section 5.7 (a)
  table = [  # section 5.2: (widths, clip, GFLOPs, MACs-only GFLOPs)
      ('mobile_former_3d_xs', (8, 128, 128), 0.419, 0.404),
      ('mobile_former_3d_xs', (8, 160, 160), 0.642, 0.619),
      ('mobile_former_3d_xs', (16, 112, 112), 0.673, 0.650),
      ('mobile_former_3d_s', (8, 160, 160), 0.915, 0.888),
      ('mobile_former_3d_s', (16, 112, 112), 0.962, 0.935),
      ('mobile_former_3d_s', (16, 128, 128), 1.164, 1.129),
      ('mobile_former_3d_m', (8, 160, 160), 1.265, 1.230),
      ('mobile_former_3d_m', (16, 160, 160), 2.503, 2.434),
      ('mobile_former_3d_m', (16, 224, 224), 4.881, 4.746),
      ('mobile_former_3d_l', (16, 160, 160), 4.358, 4.261),
      ('mobile_former_3d_l', (16, 172, 172), 5.420, 5.303),
      ('mobile_former_3d_s_t1', (8, 160, 160), 0.800, None),
  ]
  for variant, clip, gflops, macs_gflops in table:
    counts = flops.count_flops(models.create_model(variant, num_classes=400), clip)
    assert abs(total(counts) / 1e9 / gflops - 1) < 0.03, (variant, clip)
    assert abs(total(counts) / 1e9 - gflops) <= 0.001, (variant, clip)  # to the table's rounding
    if macs_gflops is not None:
      assert abs(macs(counts) / 1e9 - macs_gflops) <= 0.001, (variant, clip)
  for variant, facts in variants.VIDEO_FACTS.items():  # the family table's default clips
    model = models.create_model(variant)
    counts = models.family_of(model).count_flops(model, models.input_shape(model))
    assert abs(total(counts) / 1e9 / facts['proposal_gflops'] - 1) < 0.03, variant


def _traced_macs(model, variables, x) -> int:
  """Multiply-adds of every dot_general and convolution in the traced forward pass."""
  def walk(jaxpr) -> int:
    count = 0
    for eqn in jaxpr.eqns:
      name = eqn.primitive.name
      out = int(np.prod(eqn.outvars[0].aval.shape))
      if name == 'dot_general':
        (contract, _), _ = eqn.params['dimension_numbers']
        lhs = eqn.invars[0].aval.shape
        count += out * int(np.prod([lhs[i] for i in contract]))
      elif name == 'conv_general_dilated':
        rhs = eqn.invars[1].aval.shape
        rhs_spec = eqn.params['dimension_numbers'].rhs_spec  # (out, in, *spatial)
        count += out * int(np.prod([rhs[i] for i in rhs_spec[1:]]))
      for param in eqn.params.values():
        for sub in (param if isinstance(param, (tuple, list)) else (param,)):
          if isinstance(sub, jax.extend.core.ClosedJaxpr):
            count += walk(sub.jaxpr)
          elif isinstance(sub, jax.extend.core.Jaxpr):
            count += walk(sub)
    return count
  return walk(jax.make_jaxpr(lambda v, x: model.apply(v, x))(variables, x).jaxpr)


@pytest.mark.parametrize('make_model, shape', [
    (lambda: models.create_model('mobile_former_26m', num_classes=10), (64, 96)),
    (lambda: MobileFormer3D(num_classes=10, **_image_arch('mobile_former_52m')), (3, 40, 56)),
])
def test_count_flops_equals_the_traced_program(make_model, shape):
  """conv + linear + attention = the MACs of the program JAX runs (any input size)."""
  model = make_model()
  x = jax.ShapeDtypeStruct((1, *shape, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: nn.unbox(model.init(jax.random.PRNGKey(0), x)), x)
  counts = flops.count_flops(model, shape)
  macs = counts['conv'] + counts['linear'] + counts['attention']
  with formulations.use('standard'):  # convolutions as convolutions (CPU: shifted sums)
    assert _traced_macs(model, variables, x) == macs


@pytest.mark.parametrize('variant', ['mobile_former_26m', 'mobile_former_294m'])
def test_one_frame_temporal_kernel_one_is_the_image_model(variant):
  """Section 5.7 (a): same parameters (each shape up to a unit time axis) and multiply-adds."""
  image = models.create_model(variant, num_classes=1000)
  video = MobileFormer3D(num_classes=1000, temporal_kernel=1, video_size=(1, 224, 224),
                         **_image_arch(variant))
  image_shapes = conversion.variable_shapes(image)
  video_shapes = conversion.variable_shapes(video)
  flat_image = conversion_rules.flatten(image_shapes)
  flat_video = conversion_rules.flatten(video_shapes)
  assert set(flat_image) == set(flat_video)
  for path, leaf in flat_image.items():
    assert int(np.prod(leaf.shape)) == int(np.prod(flat_video[path].shape)), path
  assert flops.count_parameters(video) == variants.IMAGE_FACTS[variant]['params']
  video_flops = flops.count_flops(video, (1, 224, 224))
  image_flops = flops.count_flops(image, (224, 224))
  assert video_flops['conv'] == image_flops['conv']
  assert video_flops['linear'] == image_flops['linear']
  assert video_flops['attention'] == image_flops['attention']
  assert video_flops['batch_norm'] == image_flops['batch_norm']
  assert video_flops['layer_norm'] == image_flops['layer_norm']  # (pooling: fvcore's 2D-only count)


# --- Parity with the official image model -------------------------------------------------


def test_golden_eval_logits_and_intermediates(golden, image_model, image_variables, images):
  assert conversion.infer_variant({k[3:]: v for k, v in golden.items()
                                   if k.startswith('sd/')}) == 'mobile_former_26m'
  logits, state = jax.jit(lambda v, x: image_model.apply(v, x, mutable=['intermediates']))(
      image_variables, images)
  assert _rel(logits, golden['logits']) < RTOL
  sown = {'/'.join(k): v[0] for k, v in
          flax.traverse_util.flatten_dict(state['intermediates']).items()}
  assert _rel(sown['head/pre_logits'], golden['pre_logits']) < RTOL
  checked = 0
  for key in golden:
    if key.startswith('inter/'):
      path, expected = _golden_intermediate(key, golden[key])
      assert path in sown, f'{key}: nothing sown at {path}'
      assert sown[path].shape == expected.shape, key
      assert _rel(sown[path], expected) < RTOL, key
      checked += 1
  assert checked == sum(k.startswith('inter/') for k in golden) == 36


def test_golden_train_logits_and_batch_statistics(golden, golden_sd, image_model,
                                                  image_variables, images):
  logits, updates = jax.jit(
      lambda v, x: image_model.apply(v, x, train=True, mutable=['batch_stats']))(
          image_variables, images)
  assert _rel(logits, golden['logits_train']) < RTOL
  after = conversion.to_pytorch({'params': image_variables['params'], **updates}, image_model)
  stats = [k for k in golden if k.startswith('bn_after_train/')]
  assert len(stats) == 96
  for key in stats:
    name = key[len('bn_after_train/'):]
    if name.endswith('num_batches_tracked'):
      assert after[name].dtype == np.int64 and after[name] == golden[key] == 8, name
    else:
      assert _rel(after[name], golden[key]) < RTOL, name


def test_to_pytorch_round_trip_is_bit_exact(golden_sd, image_model, image_variables):
  exported = conversion.to_pytorch(image_variables, image_model)
  assert set(exported) == set(golden_sd)
  for key, value in golden_sd.items():
    assert exported[key].dtype == value.dtype and exported[key].shape == value.shape, key
    assert np.array_equal(exported[key], value), key
  assert exported['stem.1.num_batches_tracked'].dtype == np.int64


@pytest.mark.parametrize('listing, variant', [('mf_26m', 'mobile_former_26m'),
                                              ('mf_294m', 'mobile_former_294m')])
def test_official_state_dict_layout(listing, variant):
  """Every official key, shape and dtype (1000 classes), both ways; the variant inferred."""
  listing = _listing(listing)
  rng = np.random.default_rng(0)
  state_dict = {k: (np.asarray(rng.integers(0, 100), np.int64).reshape(shape)
                    if dtype == 'int64' else rng.standard_normal(shape).astype(np.float32))
                for k, (shape, dtype) in listing.items()}
  assert conversion.infer_variant(state_dict) == variant
  model = models.create_model(variant, num_classes=1000)
  exported = conversion.to_pytorch(conversion.from_pytorch(state_dict, model), model)
  assert {k: (v.shape, str(v.dtype)) for k, v in exported.items()} == listing
  assert all(np.array_equal(exported[k], state_dict[k]) for k in listing)


# --- The video reconstruction -------------------------------------------------------------


def test_static_clip_through_inflated_model_gives_image_logits(golden, golden_sd, images):
  """Section 5.7 (b): centre-inflated kernels, a clip of identical frames, any clip length."""
  video = MobileFormer3D(num_classes=int(golden['classes']), video_size=(3, 96, 96),
                         **_image_arch('mobile_former_26m'))
  variables = conversion.from_pytorch(golden_sd, video)  # an image state dict: inflated
  kernel = variables['params']['features_1']['conv2']['conv']['kernel']  # [3, 3, 3, 1, c]
  assert kernel.shape[0] == 3 and not np.any(kernel[0]) and not np.any(kernel[2])
  assert np.array_equal(kernel[1], golden_sd['features.1.conv2.0.weight'].transpose(2, 3, 1, 0))
  clip = jnp.repeat(images[:, None], 3, axis=1)  # [b, 3, 96, 96, 3]
  logits = jax.jit(lambda v, x: video.apply(v, x))(variables, clip)
  assert _rel(logits, golden['logits']) < RTOL
  # Export keeps the official names with 3D kernels: the explicit inflation's result.
  exported = conversion.to_pytorch(variables, video)
  with pytest.raises(ValueError, match='3D kernels'):
    conversion.infer_variant(exported)
  inflated = inflation.inflate_state_dict(golden_sd, video)
  assert set(exported) == set(inflated) == set(golden_sd)
  assert all(np.array_equal(exported[k], inflated[k]) for k in inflated)
  assert exported['features.1.conv2.0.weight'].shape == (36, 1, 3, 3, 3)
  assert exported['stem.0.weight'].shape == (8, 3, 1, 3, 3)


def test_sharded_video_model_equals_one_device():
  blocks = (('lite', 2, 8, 1, 0), ('mf_down', 6, 16, 2, 4), ('mf', 4, 16, 1, 0))
  model = MobileFormer3D(num_classes=10, stem_channels=8, blocks=blocks, num_tokens=3,
                         token_dim=32, num_features=64)
  clips = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 16, 16, 3))
  mesh = sharding.create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  # Random values laid out as the logical-axis rules say (no init program to compile).
  abstract = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), clips[:1])
  shardings = sharding.logical_to_shardings(abstract, mesh, sharding.DEFAULT_RULES)
  values = _random_variables(nn.unbox(abstract))
  variables = jax.device_put(values, shardings)
  block = variables['params']['features_2']
  assert block['conv1']['conv']['kernel'].sharding.spec == P(None, None, None, None, 'fsdp')
  assert block['global_block']['fc1']['kernel'].sharding.spec == P('fsdp', 'tensor')
  assert block['local_global']['q']['kernel'].sharding.spec == P('fsdp', 'tensor')
  single = jax.device_put(jax.device_get(variables), jax.devices()[0])
  forward = lambda v, x: model.apply(v, x)
  logits_single = jax.jit(forward)(single, clips)
  with mesh, nn.logical_axis_rules(sharding.DEFAULT_RULES):
    batch = jax.device_put(clips, sharding.batch_sharding(mesh, clips.ndim))
    logits_mesh = jax.jit(forward)(variables, batch)
  assert len(logits_mesh.sharding.device_set) == 8
  np.testing.assert_allclose(logits_mesh, logits_single, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(logits_single).max()) > 0


def test_remat_cross_device_batch_norm_and_dropout():
  """remat traces; bn_axis_name gives global statistics; dropouts take an rng."""
  model = MobileFormer(num_classes=5, stem_channels=8, num_tokens=3, token_dim=32,
                       num_features=64, blocks=(('lite', 2, 8, 2, 0), ('mf', 2, 8, 1, 0)))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 3))
  variables = _random_variables(conversion.variable_shapes(model))

  def grads(m):
    def loss(params):
      logits, _ = m.apply({**variables, 'params': params}, x, train=True,
                          mutable=['batch_stats'])
      return jnp.sum(logits ** 2)
    return jax.grad(loss)(variables['params'])

  # Traced only (a backward pass costs seconds to compile): the train flag stays static.
  remat = jax.eval_shape(lambda: grads(model.clone(remat=True)))
  assert jax.tree_util.tree_structure(remat) == jax.tree_util.tree_structure(
      variables['params'])

  # Two groups of two samples, statistics averaged over the mapped axis = over all four.
  step = lambda m: lambda x: m.apply(variables, x, train=True, mutable=['batch_stats'])
  mapped = jax.vmap(step(model.clone(bn_axis_name='batch')), axis_name='batch')
  (logits_mapped, stats_mapped), (logits, stats) = jax.jit(
      lambda x: (mapped(x.reshape(2, 2, 16, 16, 3)), step(model)(x)))(x)
  assert _rel(logits_mapped.reshape(4, -1), logits) < 1e-5
  for a, b in zip(jax.tree_util.tree_leaves(stats_mapped), jax.tree_util.tree_leaves(stats)):
    assert _rel(a[0], b) < 1e-5

  noisy = model.clone(drop_path_rate=0.5, head_dropout_rate=0.5)
  run = lambda rng: noisy.apply(variables, x, train=True, mutable=['batch_stats'],
                                rngs={'dropout': rng})[0]
  first, second = jax.jit(lambda: (run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2))))()
  assert not np.allclose(first, second)


# --- Interface and errors -----------------------------------------------------------------


def test_families_and_interface():
  image = models.create_model('mobile_former_294m')
  video = models.create_model('mobile_former_3d_s')
  assert models.family_of(image).name == 'mobile_former'
  assert models.family_of(video).name == 'mobile_former_3d'
  assert models.input_shape(image) == (224, 224) and image.num_classes == 400
  assert models.input_shape(video) == (8, 160, 160)
  assert models.create_model('mobile_former_3d_s_t1').temporal_kernel == 1
  for model in (image, video):
    family = models.family_of(model)
    assert family.head_prefix == 'classifier.classifier.'
    assert family.mean == (123.675, 116.28, 103.53) and family.std == (58.395, 57.12, 57.375)
    assert models.model_from_config(models.model_config(model)) == model
    assert 'num_classes' in family.architecture_fields
  x = jax.ShapeDtypeStruct((2, 5, 64, 48, 3), jnp.float32)  # any clip size
  features, logits = jax.eval_shape(
      lambda v, x: (video.apply(v, x, method='extract_features'), video.apply(v, x)),
      conversion.variable_shapes(video), x)
  assert features.shape == (2, 5, 2, 2, 6 * 160) and logits.shape == (2, 400)
  for variant in ('mobile_former_3d_s', 'mobile_former_3d_s_t1'):  # video files, by shapes
    shapes = conversion.variable_shapes(models.create_model(variant, num_classes=400))
    state_dict = conversion.to_pytorch(_random_variables(shapes))
    assert models.family_of(video).infer_variant(state_dict) == variant
  with pytest.raises(ValueError, match=r'\[batch, T, H, W, 3\]'):
    jax.eval_shape(lambda: video.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
  with pytest.raises(ValueError, match=r'\[batch, H, W, 3\]'):
    jax.eval_shape(lambda: image.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 64, 64, 3))))


def test_strict_conversion_errors(golden_sd, image_model):
  sd = dict(golden_sd)
  sd['features.2.conv3.0.weight'] = np.zeros((97, 1, 3, 3), np.float32)
  with pytest.raises(conversion_rules.ConversionError,
                     match=r'features\.2\.conv3\.0\.weight: checkpoint \(97, 1, 3, 3\), '
                           r'model \(96, 1, 3, 3\)'):
    conversion.from_pytorch(sd, image_model)
  sd = dict(golden_sd)
  del sd['features.4.global_local.proj.bias']
  sd['features.4.extra'] = np.zeros(3, np.float32)
  with pytest.raises(conversion_rules.ConversionError,
                     match=r'missing keys \(1\): features\.4\.global_local\.proj\.bias'
                           r'(.|\n)*unexpected keys \(1\): features\.4\.extra'):
    conversion.from_pytorch(sd, image_model)
  # Another class count: an error naming the classifier, or a new head with reinit_head.
  other = MobileFormer(num_classes=7, image_size=(96, 96), **_image_arch('mobile_former_26m'))
  with pytest.raises(conversion_rules.ConversionError,
                     match=r'classifier\.classifier\.1\.weight: checkpoint \(10, 1024\), '
                           r'model \(7, 1024\)(.|\n)*reinit_head'):
    conversion.from_pytorch(golden_sd, other)
  variables = conversion.from_pytorch(golden_sd, other, reinit_head=True)
  assert variables['params']['head']['classifier']['kernel'].shape == (1024, 7)
  assert np.array_equal(variables['params']['head']['fc']['kernel'],
                        golden_sd['classifier.fc.0.weight'].T)
  with pytest.raises(ValueError, match='no Mobile-Former variant'):
    conversion.infer_variant({**golden_sd, 'tokens.weight': np.zeros((5, 128))})
