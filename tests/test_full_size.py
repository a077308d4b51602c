"""The Flax DualFormer and the converter against an independent PyTorch implementation.

`torch_reference.DualFormerRef` is a second implementation written from
ARCHITECTURE.md with stock torch layers. The fast tests validate it against the official
golden file (so it is a trustworthy reference) and check its state-dict keys against the
official listings; the slow tests run full-size Tiny and Small at 32x224x224 with random
weights in both frameworks and compare eval logits and features, train-mode logits and
BatchNorm statistics, and the state-dict round trip.
"""

import pathlib
import time

import numpy as np
import pytest

torch = pytest.importorskip('torch')

import jax  # pylint: disable=g-import-not-at-top,g-bad-import-order
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from dualformer_jax import convert  # pylint: disable=g-import-not-at-top
from dualformer_jax import models  # pylint: disable=g-import-not-at-top
from torch_reference import DualFormerRef  # pylint: disable=g-import-not-at-top

REFERENCE_DIR = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'reference'
GOLDEN_PATH = REFERENCE_DIR / 'dualformer_mini_golden.npz'
OFFICIAL_BACKBONE_PARAMS = {'tiny': 21_767_360, 'small': 48_908_064, 'base': 86_837_632}
TOLERANCE = 1e-4
BN_MARK = '.attn.lr.1.'  # The BatchNorm inside GP-MSA's coarse level.


def rel_err(actual, reference) -> float:
  """max |actual - reference| / max |reference|."""
  actual = np.asarray(actual, np.float64)
  reference = np.asarray(reference, np.float64)
  assert actual.shape == reference.shape, (actual.shape, reference.shape)
  return float(np.abs(actual - reference).max() / np.abs(reference).max())


def official_listing(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
  """`state_dicts/<name>.txt` -> {key: (shape, dtype)}."""
  path = REFERENCE_DIR / 'state_dicts' / f'{name}.txt'
  if not path.exists():
    pytest.skip(f'official state-dict listing not found at {path} '
                '(the shared/ folder beside the repo checkout)')
  listing = {}
  for line in path.read_text().splitlines():
    if not line.strip() or line.startswith('#'):
      continue
    key, shape, dtype = line.split('\t')
    listing[key] = (tuple(int(s) for s in shape.strip('()').split(',') if s.strip()), dtype)
  return listing


def torch_listing(state_dict) -> dict[str, tuple[tuple[int, ...], str]]:
  return {k: (tuple(v.shape), str(v.dtype).replace('torch.', '')) for k, v in state_dict.items()}


def reference_model(name: str, num_classes: int = 400, **kwargs) -> DualFormerRef:
  return DualFormerRef(num_classes=num_classes, head_dropout=0.0,
                       **models.VARIANTS[name], **kwargs)


# ----------------------------------------------------------------------------- fast


@pytest.fixture(scope='module')
def golden():
  if not GOLDEN_PATH.exists():
    pytest.skip(f'golden reference not found at {GOLDEN_PATH} '
                '(the shared/ folder beside the repo checkout)')
  with np.load(GOLDEN_PATH) as data:
    return {k: data[k] for k in data.files}


def test_torch_reference_reproduces_golden(golden):
  """The reference itself is faithful: official weights give the official outputs."""
  state_dict = {k[len('sd/'):]: torch.from_numpy(np.array(v))
                for k, v in golden.items() if k.startswith('sd/')}
  ref = reference_model('mini', num_classes=int(golden['classes']))
  assert torch_listing(ref.state_dict()) == official_listing('mini')
  ref.load_state_dict(state_dict, strict=True)
  video = torch.from_numpy(golden['input'].astype(np.float32))
  with torch.no_grad():
    ref.eval()
    features = ref.features(video)
    logits = ref.cls_head(features)
    assert rel_err(features.numpy(), golden['features']) < TOLERANCE
    assert rel_err(logits.numpy(), golden['logits']) < TOLERANCE
    ref.train()
    logits_train = ref(video)
  assert rel_err(logits_train.numpy(), golden['logits_train']) < TOLERANCE
  after = ref.state_dict()
  bn_keys = [k for k in golden if k.startswith('bn_after_train/')]
  assert len(bn_keys) == 4
  for key in bn_keys:
    name = key[len('bn_after_train/'):]
    assert rel_err(after[name].numpy(), golden[key]) < TOLERANCE, name
    # It really moved: the golden statistics differ from the loaded ones.
    assert not np.allclose(golden[key], golden['sd/' + name])
  for name in after:
    if name.endswith('num_batches_tracked'):
      assert int(after[name]) == int(golden['sd/' + name]) + 1


def test_gradients_match_torch_reference(golden):
  """Training gradients (cross-entropy, train mode) equal PyTorch autograd's for every
  parameter: the hand-written VJPs (Dense, PEG, GELU) and attention remat included."""
  state_dict = {k[len('sd/'):]: np.array(v) for k, v in golden.items() if k.startswith('sd/')}
  num_classes = int(golden['classes'])
  video = golden['input'].astype(np.float32)  # [b, 3, t, h, w]
  labels = np.arange(video.shape[0]) % num_classes

  ref = reference_model('mini', num_classes=num_classes)
  ref.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
  ref.train()
  loss_ref = torch.nn.functional.cross_entropy(ref(torch.from_numpy(video)),
                                               torch.from_numpy(labels).long())
  loss_ref.backward()
  grads_ref = {k: p.grad.numpy() for k, p in ref.named_parameters()}

  model = models.create_model('mini', num_classes=num_classes, drop_path_rate=0.0,
                              head_dropout_rate=0.0)
  variables = convert.from_pytorch(state_dict, model)

  def loss_fn(params):
    logits, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                            jnp.asarray(video.transpose(0, 2, 3, 4, 1)), train=True,
                            mutable=['batch_stats'])
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(log_probs, jnp.asarray(labels)[:, None], 1).mean()

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables['params'])
  assert abs(float(loss) - loss_ref.item()) < 1e-5 * loss_ref.item()
  grads = convert.to_pytorch({'params': grads, 'batch_stats': variables['batch_stats']}, model)
  assert set(grads_ref) <= set(grads) and len(grads_ref) > 100
  scale = max(np.abs(g).max() for g in grads_ref.values())
  for key, expected in grads_ref.items():
    # Relative to the tensor's own size, floored at 1e-3 of the largest gradient (the
    # biases right before the coarse level's BatchNorm have ~1e-9 gradients: noise).
    err = np.abs(np.asarray(grads[key], np.float64) - expected).max()
    assert err < 1e-4 * max(np.abs(expected).max(), 1e-3 * scale), key


@pytest.mark.parametrize('name', ['tiny', 'small', 'base'])
def test_torch_reference_official_keys_and_parameter_count(name):
  """Keys, shapes, dtypes and backbone size of the reference = the official model's."""
  with torch.device('meta'):  # shapes only, no memory, no initialization cost
    ref = reference_model(name)
  assert torch_listing(ref.state_dict()) == official_listing(name)
  assert sum(p.numel() for p in ref.backbone.parameters()) == OFFICIAL_BACKBONE_PARAMS[name]


# ----------------------------------------------------------------------------- slow


def randomize(ref: DualFormerRef, seed: int) -> None:
  """Random weights everywhere, including norm affines and BatchNorm running statistics.

  Linear and Conv3d keep PyTorch's default (random uniform) initialization, weights and
  biases; LayerNorm/BatchNorm affines, running statistics and counters are randomized so
  that no tensor is trivially 0 or 1.
  """
  torch.manual_seed(seed)
  with torch.no_grad():
    for module in ref.modules():
      if isinstance(module, torch.nn.LayerNorm):
        module.weight.normal_(1.0, 0.2)
        module.bias.normal_(0.0, 0.2)
      elif isinstance(module, torch.nn.BatchNorm3d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.2)
        module.running_mean.normal_(0.0, 0.3)
        module.running_var.uniform_(0.5, 2.0)
        module.num_batches_tracked.fill_(int(torch.randint(1, 100_000, ())))


def _jax_forwards(model):
  """One jitted function: eval logits + features, train logits + new batch_stats."""

  def eval_both(module, clips):
    features = module.backbone(clips, False)
    return module.head(features, False), features

  @jax.jit
  def forwards(variables, clips):
    logits, features = model.apply(variables, clips, method=eval_both)
    logits_train, updates = model.apply(variables, clips, train=True,
                                        mutable=['batch_stats'],
                                        rngs={'dropout': jax.random.PRNGKey(0)})
    return logits, features, logits_train, updates['batch_stats']

  return forwards


@pytest.mark.slow
@pytest.mark.parametrize('name', ['tiny', 'small'])
def test_full_size_matches_torch_reference(name):
  timings = {}
  start = time.perf_counter()
  torch.manual_seed(0)
  ref = reference_model(name)
  randomize(ref, seed=1)
  state_dict = {k: v.detach().clone() for k, v in ref.state_dict().items()}
  assert torch_listing(state_dict) == official_listing(name)
  sd = {k: v.numpy() for k, v in state_dict.items()}

  # Conversion both ways, bit for bit.
  model = models.create_model(name, num_classes=400, drop_path_rate=0.0,
                              head_dropout_rate=0.0)
  variables = convert.from_pytorch(sd, model)
  back = convert.to_pytorch(variables, model)
  assert sorted(back) == sorted(sd)
  for key, value in sd.items():
    assert back[key].dtype == value.dtype, (key, back[key].dtype, value.dtype)
    assert back[key].shape == value.shape, key
    assert np.array_equal(back[key], value), key
  assert all(back[k].dtype == np.int64 for k in back if k.endswith('num_batches_tracked'))
  timings['build+convert'] = time.perf_counter() - start

  # PyTorch: eval features and logits, then one training forward.
  torch.manual_seed(2)
  video = torch.randn(1, 3, 32, 224, 224)
  start = time.perf_counter()
  with torch.no_grad():
    ref.eval()
    features_t = ref.features(video)
    logits_t = ref.cls_head(features_t).numpy()
    features_t = features_t.numpy()
    ref.train()
    logits_train_t = ref(video).numpy()
  bn_after_t = {k: v.numpy() for k, v in ref.state_dict().items() if BN_MARK in k}
  timings['torch (eval+train)'] = time.perf_counter() - start
  del ref

  # JAX, channels-last.
  clips = jnp.asarray(video.numpy().transpose(0, 2, 3, 4, 1))
  start = time.perf_counter()
  logits, features, logits_train, batch_stats = jax.device_get(
      _jax_forwards(model)(variables, clips))
  timings['jax (compile+eval+train)'] = time.perf_counter() - start
  assert features.shape == (1, 16, 7, 7, model.embed_dims[-1])
  errors = {'features': rel_err(features, features_t.transpose(0, 2, 3, 4, 1)),
            'logits': rel_err(logits, logits_t),
            'logits_train': rel_err(logits_train, logits_train_t)}
  print(f'\n{name}: ' + ', '.join(f'{k} {v:.1f}s' for k, v in timings.items()) +
        '; relative errors ' + ', '.join(f'{k} {v:.1e}' for k, v in errors.items()))
  for key, error in errors.items():
    assert error < TOLERANCE, (key, error)
  # Training mode really differs from eval (BatchNorm on batch statistics).
  assert rel_err(logits_train_t, logits_t) > 100 * TOLERANCE

  sd_after = convert.to_pytorch({'params': variables['params'], 'batch_stats': batch_stats},
                                model)
  assert sorted(k for k in sd_after if BN_MARK in k) == sorted(bn_after_t)
  assert len(bn_after_t) == 2 * 5  # two coarse stages x (weight, bias, mean, var, count)
  for key, value in bn_after_t.items():
    if key.endswith('num_batches_tracked'):
      assert int(sd_after[key]) == int(value) == int(sd[key]) + 1, key
    else:
      assert rel_err(sd_after[key], value) < TOLERANCE, key
      if 'running' in key:
        assert not np.allclose(value, sd[key]), key  # the statistics moved
