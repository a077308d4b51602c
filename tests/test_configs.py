"""Every config file loads, names a registered dataset and a valid model."""

import importlib.util
import pathlib

import pytest

from conftest import REPO
from dualformer_jax import models

# The arguments each config file takes (files not listed: none); every configs/*.py is
# tested, so a new config cannot go untested.
ARGUMENTS = {
    'default.py': [None, 'lvt', 'mobile_former_3d'], 'k400.py': ['tiny', 'small', 'base'],
    'ucf101.py': [None, 'tiny'], 'k400_tokenlabel.py': ['tiny', 'small'],
}
CONFIGS = {path.name: ARGUMENTS.get(path.name, [None])
           for path in sorted((REPO / 'configs').glob('*.py')) if not path.name.startswith('_')}


def load(file: str, arg):
  spec = importlib.util.spec_from_file_location(file[:-3], REPO / 'configs' / file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module, (module.get_config(arg) if arg else module.get_config())


@pytest.mark.parametrize('file, arg', [(f, a) for f, args in CONFIGS.items() for a in args])
def test_config_is_complete_and_documented(file, arg):
  module, config = load(file, arg)
  assert 'python train.py --config configs/' + file in module.__doc__
  assert config.model.variant in models.all_variants()
  assert config.parallelism in ('jit', 'pmap')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import dualformer_jax.data.builders  # noqa: F401  pylint: disable=unused-import
  builder = config.data.name.split('/')[0]
  assert tfds.builder_cls(builder).name == builder


NORM_K = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
NORM_C = ((104, 117, 128), (1, 1, 1))
# RECIPES.md section 4, one row per official config: variant, classes (-1: the dataset's),
# norm, drop_path, lr, wd, warm-up epochs, epochs, clips per step (8 GPUs), frames,
# interval, model video_size ((): the variant's), val views (clips, crops, short side).
OFFICIAL = {
    ('k400.py', 'base'): ('base', -1, NORM_K, 0.3, 1e-3, 0.05, 2.5, 30, 64, 32, 2, (), (1, 1, 256)),
    ('k600.py', 'base'): ('base', 600, NORM_K, 0.3, 5e-4, 0.05, 2.5, 30, 64, 32, 2, (), (1, 1, 256)),
    ('diving48.py', None): ('small', -1, NORM_C, 0.2, 1e-3, 0.02, 1, 30, 64, 32, 4, (), (4, 1, 256)),
    ('hmdb51.py', None): ('small', -1, NORM_C, 0.3, 1e-3, 0.1, 1, 16, 128, 32, 4, (), (4, 1, 256)),
    ('k400.py', 'small'): ('small', -1, NORM_K, 0.2, 1e-3, 0.02, 2.5, 30, 64, 32, 2, (), (1, 1, 256)),
    ('ucf101.py', None): ('small', -1, NORM_C, 0.3, 1e-3, 0.1, 1, 16, 128, 32, 4, (), (4, 1, 256)),
    ('k400_tokenlabel.py', 'small'): ('small', -1, NORM_K, 0.2, 1e-3, 0.02, 2.5, 30, 64, 32, 2, (),
                                      (1, 1, 256)),
    ('k400.py', 'tiny'): ('tiny', -1, NORM_K, 0.1, 1e-3, 0.02, 3, 30, 64, 32, 2, (), (1, 1, 256)),
    ('ucf101.py', 'tiny'): ('tiny', -1, NORM_C, 0.2, 1e-3, 0.05, 1, 16, 128, 16, 4, (16, 224, 224),
                            (4, 1, 256)),
    ('k400_tokenlabel.py', 'tiny'): ('tiny', -1, NORM_K, 0.1, 1e-3, 0.02, 3, 30, 128, 32, 2, (),
                                     (1, 1, 256)),
}
# Shared by every official config (RECIPES.md 2.4, 2.5, section 4).
OFFICIAL_GROUPS = {'pos_block': (1.0, 0.0), 'norm': (1.0, 0.0), 'backbone': (0.1, 1.0)}


@pytest.mark.parametrize('file, arg', list(OFFICIAL))
def test_official_recipe_values(file, arg):
  (variant, classes, norm, drop_path, lr, wd, warmup, epochs, clips, frames, interval,
   video_size, val_views) = OFFICIAL[(file, arg)]
  _, c = load(file, arg)
  assert c.model.variant == variant and c.model.num_classes == classes
  assert (tuple(c.data.mean), tuple(c.data.std)) == norm
  assert c.model.drop_path_rate == drop_path
  assert (c.model.head_dropout_rate, c.model.drop_rate, c.model.attn_drop_rate) == (0.5, 0, 0)
  assert (c.train.learning_rate, c.train.weight_decay) == (lr, wd)
  assert (c.train.warmup_epochs, c.train.num_epochs, c.train.num_steps) == (warmup, epochs, 0)
  assert c.train.batch_size * c.train.grad_accum_steps == clips
  assert (c.data.clip_len, c.data.frame_interval) == (frames, interval)
  assert tuple(c.model.video_size) == video_size
  assert (c.data.eval_num_clips, c.data.eval_num_crops, c.data.eval_short_side,
          c.data.eval_crop_size) == (*val_views, 224)
  # Train pipeline, optimizer and schedule shared by every official config.
  assert (c.data.short_side, c.data.crop_size, c.data.random_resized_crop, c.data.flip) == (
      256, 224, True, True)
  assert tuple(c.data.area_range) == (0.08, 1.0)
  assert tuple(c.data.aspect_range) == pytest.approx((3 / 4, 4 / 3))
  assert (c.train.optimizer, c.train.b1, c.train.b2) == ('adamw', 0.9, 0.999)
  assert {k: (lr_m, wd_m) for k, lr_m, wd_m in c.train.param_groups} == OFFICIAL_GROUPS
  assert c.train.backbone_lr_mult == 1.0
  assert (c.train.warmup_start_factor, c.train.cosine_by_epoch, c.train.min_lr) == (
      0.1, True, 0.0)
  assert (c.train.grad_clip_norm, c.train.label_smoothing) == (0.0, 0.0)
  assert c.init_partial == ((file, arg) == ('ucf101.py', 'tiny'))
  finetune = file in ('diving48.py', 'hmdb51.py', 'ucf101.py')
  assert bool(c.init_from) == finetune
  if file == 'k400_tokenlabel.py':
    tl = c.token_labelling
    assert (tl.teacher, tl.teacher_variant, tl.gamma, tl.top_k, tl.mix_token) == (
        '', 'base', 0.5, 5, False)


def test_recipe_arguments_and_ssv2():
  _, ssv2 = load('ssv2.py', None)
  assert ssv2.data.flip is False
  module, _ = load('ssv2.py', None)
  assert 'no official' in module.__doc__.lower()
  _, tiny = load('ucf101.py', 'tiny')
  assert tiny.init_partial is True and tiny.init_from == 'checkpoints/tiny_k400'
  for file in ('k400.py', 'k400_tokenlabel.py', 'ucf101.py'):
    with pytest.raises(ValueError, match='choose one of'):
      load(file, 'huge')
