"""Every config file loads, names a registered dataset and a valid model."""

import importlib.util
import pathlib

import pytest

from conftest import REPO
from dualformer_jax import models

CONFIGS = {
    'default.py': [None], 'k400.py': ['tiny', 'small', 'base'], 'k600.py': ['base'],
    'ucf101.py': [None], 'hmdb51.py': [None], 'diving48.py': [None], 'ssv2.py': [None],
}


def load(file: str, arg):
  spec = importlib.util.spec_from_file_location(file[:-3], REPO / 'configs' / file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module, (module.get_config(arg) if arg else module.get_config())


@pytest.mark.parametrize('file, arg', [(f, a) for f, args in CONFIGS.items() for a in args])
def test_config_is_complete_and_documented(file, arg):
  module, config = load(file, arg)
  assert 'python train.py --config configs/' + file in module.__doc__
  assert config.model.variant in models.VARIANTS
  assert config.parallelism in ('jit', 'pmap')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import dualformer_jax.data.builders  # noqa: F401  pylint: disable=unused-import
  builder = config.data.name.split('/')[0]
  assert tfds.builder_cls(builder).name == builder


def test_official_recipe_values():
  _, tiny = load('k400.py', 'tiny')
  assert (tiny.train.learning_rate, tiny.train.weight_decay, tiny.train.batch_size) == (
      1e-3, 0.02, 64)
  assert (tiny.train.num_epochs, tiny.train.warmup_epochs, tiny.model.drop_path_rate) == (
      30.0, 3.0, 0.1)
  _, k600 = load('k600.py', 'base')
  assert (k600.train.learning_rate, k600.train.weight_decay, k600.model.drop_path_rate,
          k600.model.num_classes) == (5e-4, 0.05, 0.3, 600)
  _, diving = load('diving48.py', None)
  assert diving.data.frame_interval == 4 and diving.data.eval_num_crops == 3
  _, ssv2 = load('ssv2.py', None)
  assert ssv2.data.flip is False
  with pytest.raises(ValueError, match='choose one of'):
    load('k400.py', 'huge')
