"""Test set-up: 8 simulated CPU devices, the golden reference, small shared models."""

import os
import pathlib

# Must happen before JAX initializes its backends.
# LLVM's optimizations cost tests far more compile time than they save run time.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
os.environ.setdefault('XLA_FLAGS', f'--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import atexit  # pylint: disable=g-import-not-at-top
import shutil  # pylint: disable=g-import-not-at-top
import tempfile  # pylint: disable=g-import-not-at-top

# One persistent compilation cache for this test session, shared with the training
# subprocesses the tests launch: each distinct step compiles once.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='dualformer_jax_cache_')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO.parent / 'shared' / 'reference'
GOLDEN_PATH = REFERENCE_DIR / 'dualformer_mini_golden.npz'


def load_golden(path: pathlib.Path) -> dict[str, np.ndarray]:
  """A golden `.npz` from the reference folder as a dict; skips the test if absent."""
  if not path.exists():
    pytest.skip(f'golden reference not found at {path} (shared/ beside the repo)')
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope='session')
def golden():
  """The official model's outputs on the mini configuration, with its weights."""
  return load_golden(GOLDEN_PATH)


@pytest.fixture(scope='session')
def golden_state_dict(golden):
  return {k[len('sd/'):]: v for k, v in golden.items() if k.startswith('sd/')}


def official_listing(name: str, folder: str = ''
                     ) -> dict[str, tuple[tuple[int, ...], str]]:
  """`<folder>/state_dicts/<name>.txt` of the reference -> {key: (shape, dtype)}."""
  path = REFERENCE_DIR / folder / 'state_dicts' / f'{name}.txt'
  if not path.exists():
    pytest.skip(f'{path} not found')
  listing = {}
  for line in path.read_text().splitlines():
    if not line or line.startswith('#'):
      continue
    key, shape, dtype = line.split('\t')
    listing[key] = (tuple(int(s) for s in shape.strip('()').split(',') if s.strip()), dtype)
  return listing
