"""Kinetics-600, the official LVT recipe: configs/lvt_k400.py's with the K600 model (one
shared feature-fixation gate) and 600 classes (docs/recipes.md).

    python train.py --config configs/lvt_k600.py --workdir workdir/lvt_k600 \
        --config.data.data_dir=DATA_DIR --config.init_from=PRETRAINED --config.init_partial=True

Test (4 clips x 3 crops at short side 224, logits summed over the 12 views):

    python train.py --config configs/lvt_k600.py --workdir workdir/lvt_k600 --mode eval \
        --config.data.data_dir=DATA_DIR
"""

import importlib.util
import pathlib


def _kinetics_lvt():
  """`kinetics_lvt` of configs/lvt_k400.py, found beside this file."""
  path = pathlib.Path(__file__).with_name('lvt_k400.py')
  spec = importlib.util.spec_from_file_location('lvt_k400', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.kinetics_lvt


def get_config():
  c = _kinetics_lvt()('lvt_k600', 'kinetics600_video')
  c.model.num_classes = 600
  c.eval.every_steps = c.checkpoint.every_steps = 12000  # about one epoch of Kinetics-600
  return c
