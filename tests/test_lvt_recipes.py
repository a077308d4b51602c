"""configs/lvt_*.py hold the official LVT recipes (LVT ARCHITECTURE.md section 12)."""

import importlib.util

import math

import pytest

from conftest import REPO
from dualformer_jax import data
from dualformer_jax import models
from dualformer_jax import optim
from dualformer_jax import train_lib

# Section 12, one row per official model: dataset, classes (-1: the dataset's), base lr,
# warm-up epochs, warm-up start lr, epochs, weight decay, global batch, label smoothing,
# mixup alpha, sampling, frames, frame interval (dense), train crop, flip, random
# erasing p, test views (clips, crops, short side).
OFFICIAL = {
    'lvt_k400': ('kinetics400_video', -1, 0.035, 5, 0.01, 40, 1e-5, 32, 0.3, 0.4, 'dense', 16,
                 17, 'multi_scale', True, 0.0, (4, 3, 224)),
    'lvt_k600': ('kinetics600_video', 600, 0.035, 5, 0.01, 40, 1e-5, 32, 0.3, 0.4, 'dense', 16,
                 17, 'multi_scale', True, 0.0, (4, 3, 224)),
    'lvt_ssv2': ('something_something_v2_video', 174, 0.03, 5, 0.003, 35, 1e-4, 32, 0.0, 0.0,
                 'segment', 16, None, 'jitter_256_320', False, 0.5, (2, 3, 224)),
}
HEAD_BIASES = {'consensus.mlp_head.0.bias', 'consensus.mlp_head.1.bias',
               'consensus.mlp_head.4.bias', 'new_fc.bias'}


def load(variant):
  file = REPO / 'configs' / f'{variant}.py'
  spec = importlib.util.spec_from_file_location(variant, file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module, module.get_config()


@pytest.mark.parametrize('variant', sorted(OFFICIAL))
def test_config_has_the_official_values(variant):
  module, c = load(variant)
  (dataset, classes, lr, warmup, warmup_lr, epochs, wd, batch, smoothing, alpha, sampling,
   frames, interval, crop, flip, erasing, views) = OFFICIAL[variant]
  assert f'python train.py --config configs/{variant}.py' in module.__doc__
  assert '--mode eval' in module.__doc__
  assert c.model.variant == variant and variant in models.all_variants()
  assert (c.data.name, c.model.num_classes) == (dataset, classes)
  assert (c.model.drop_path_rate, c.model.drop_rate, c.model.attn_drop_rate,
          c.model.head_dropout_rate) == (0.0, 0.0, 0.0, 0.5)
  # SGD with Nesterov, warm-up from the start lr, cosine per iteration to 0
  assert (c.train.optimizer, c.train.momentum, c.train.nesterov) == ('sgd', 0.9, True)
  assert (c.train.learning_rate, c.train.warmup_epochs, c.train.num_epochs) == (lr, warmup,
                                                                                epochs)
  assert c.train.warmup_start_factor * c.train.learning_rate == pytest.approx(warmup_lr)
  assert (c.train.cosine_by_epoch, c.train.min_lr, c.train.grad_clip_norm) == (False, 0.0, 0.0)
  assert c.train.cosine_over_warmup
  plan = optim.plan_steps(batch * 100, c.train.batch_size, c.train.num_epochs,
                          c.train.warmup_epochs, c.train.grad_accum_steps)
  schedule = optim.learning_rate_schedule(c.train.learning_rate, plan,
                                          warmup_start_factor=c.train.warmup_start_factor,
                                          cosine_over_warmup=c.train.cosine_over_warmup)
  assert float(schedule(0)) == pytest.approx(warmup_lr)
  # SlowFast: the warm-up ends on the cosine of all epochs, (1 + cos(pi W / E)) / 2.
  handover = 0.5 * (1 + math.cos(math.pi * warmup / epochs))
  assert float(schedule(plan.warmup_steps)) == pytest.approx(lr * handover, rel=1e-5)
  assert float(schedule(plan.total_steps)) == pytest.approx(0.0, abs=1e-9)
  assert (c.train.weight_decay, c.train.batch_size * c.train.grad_accum_steps) == (wd, batch)
  assert (c.train.label_smoothing, c.train.mixup_alpha) == (smoothing, alpha)
  # input: (x / 255 - 0.5) / 0.5, frames, crops, augmentation
  family = models.families()['lvt']
  assert train_lib.normalization(c, family) == ((127.5,) * 3, (127.5,) * 3)
  assert (c.data.sampling, c.data.clip_len) == (sampling, frames)
  if interval is not None:
    assert c.data.frame_interval == interval
  assert c.data.crop_size == 224 and not c.data.random_resized_crop
  if crop == 'multi_scale':
    assert c.data.multi_scale_crop and c.data.short_side == 256 and not c.data.short_side_range
  else:
    assert not c.data.multi_scale_crop and tuple(c.data.short_side_range) == (256, 320)
  assert c.data.flip == flip
  assert c.data.auto_augment == 'v0'
  assert c.data.random_erasing_prob == erasing
  assert (c.data.eval_num_clips, c.data.eval_num_crops, c.data.eval_short_side,
          c.data.eval_crop_size) == (*views, 224)
  assert c.eval.view_reduction == 'sum_logits'
  # decay on every parameter but the head biases
  assert {key for key, _, decay in c.train.param_groups if decay == 0.0} == HEAD_BIASES
  assert all(lr_mult == 1.0 for _, lr_mult, _ in c.train.param_groups)
  data.check_recipe_config(c)


def test_weight_decay_skips_exactly_the_head_biases():
  _, c = load('lvt_k400')
  model = models.create_model('lvt_mini', num_classes=10)
  family = models.family_of(model)
  from dualformer_jax import convert  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  mults = optim.param_multipliers(convert.variable_shapes(model)['params'],
                                  param_groups=tuple(c.train.param_groups),
                                  name_fn=family.param_name, head_module=family.head_module)
  is_mult = lambda x: isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], float)
  leaves = jax.tree_util.tree_flatten_with_path(mults, is_leaf=is_mult)[0]
  no_decay = {optim.official_name(path, family.param_name) for path, m in leaves if m[1] == 0.0}
  assert no_decay == HEAD_BIASES
  assert all(m[0] == 1.0 for _, m in leaves)
