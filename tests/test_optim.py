"""Optimizer semantics of the official recipes (RECIPES.md 2.4, 2.5), against hand-computed
numbers; SGD; partial checkpoint loading."""

import logging
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualformer_jax import config_base
from dualformer_jax import convert
from dualformer_jax import models
from dualformer_jax import optim
from dualformer_jax import train_lib

# Cosine factors per epoch from RECIPES.md 2.5: epochs 0..3 for E = 30 and E = 16.
E30 = (1.0, 0.99726, 0.98907, 0.97553)
E16 = (1.0, 0.99039, 0.96194, 0.91573)


def by_epoch(plan, **kw):
  return optim.learning_rate_schedule(1e-3, plan, warmup_start_factor=0.1,
                                      cosine_by_epoch=True, **kw)


@pytest.mark.parametrize('step, expected', [
    (0, 1e-3 * 0.1),  # warm-up starts at 10 %
    (5, 1e-3 * (0.1 + 0.9 * 5 / 30)),  # epoch 0, t / W = 5 / 30
    (15, 1e-3 * E30[1] * (0.1 + 0.9 * 15 / 30)),  # epoch 1: warm-up on that epoch's lr
    (29, 1e-3 * E30[2] * (0.1 + 0.9 * 29 / 30)),
    (30, 1e-3 * E30[3]),  # t == W: the regular lr
    (39, 1e-3 * E30[3]),  # constant within an epoch
    (299, 1e-3 * 0.5 * (1 + math.cos(math.pi * 29 / 30))),  # last epoch: 0.00274, not 0
])
def test_warmup_then_cosine_per_epoch(step, expected):
  plan = optim.plan_steps(100, 10, num_epochs=30, warmup_epochs=3)  # 10 steps per epoch
  assert (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps) == (10, 300, 30)
  assert float(by_epoch(plan)(step)) == pytest.approx(expected, rel=2e-5)


def test_fractional_warmup_keeps_the_value_at_floor_w_until_the_epoch_ends():
  # 5 steps per epoch, 2.5 epochs of warm-up: W = 12.5, floor(W) = 12 in epoch 2.
  plan = optim.plan_steps(50, 10, num_epochs=30, warmup_epochs=2.5)
  lr = by_epoch(plan)
  at_12 = 1e-3 * E30[2] * (0.1 + 0.9 * 12 / 12.5)
  for step in (12, 13, 14):
    assert float(lr(step)) == pytest.approx(at_12, rel=2e-5)
  assert float(lr(15)) == pytest.approx(1e-3 * E30[3], rel=2e-5)


def test_accumulation_uses_the_last_micro_batch_of_each_window():
  # 5 optimizer steps per epoch, 2 micro-batches each: 10 micro-batches per epoch, W = 10.
  plan = optim.plan_steps(80, 8, num_epochs=16, warmup_epochs=1, grad_accum_steps=2)
  assert (plan.steps_per_epoch, plan.total_steps) == (5, 80)
  lr = by_epoch(plan)
  assert float(lr(0)) == pytest.approx(1e-3 * (0.1 + 0.9 * 1 / 10), rel=1e-6)  # t = 1
  assert float(lr(4)) == pytest.approx(1e-3 * (0.1 + 0.9 * 9 / 10), rel=1e-6)  # t = 9
  assert float(lr(5)) == pytest.approx(1e-3 * E16[1], rel=2e-5)  # t = 11, epoch 1
  assert float(lr(12)) == pytest.approx(1e-3 * E16[2], rel=2e-5)  # t = 25, epoch 2
  assert float(lr(79)) == pytest.approx(1e-3 * 0.00961, rel=1e-3)


def test_min_lr_and_the_default_per_step_schedule():
  plan = optim.plan_steps(100, 10, num_epochs=30, warmup_epochs=3)
  lr = by_epoch(plan, min_lr=1e-5)
  assert float(lr(299)) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.00274, rel=1e-3)
  default = optim.learning_rate_schedule(1e-3, plan)  # 0 -> peak over 30 steps, cosine
  assert float(default(0)) == 0.0 and float(default(15)) == pytest.approx(5e-4)
  assert float(default(30)) == pytest.approx(1e-3)
  assert float(default(165)) == pytest.approx(5e-4, rel=1e-5)


def test_cosine_over_warmup_is_slowfasts_schedule():
  plan = optim.plan_steps(100, 10, num_epochs=40, warmup_epochs=5)  # 10 steps per epoch
  lr = optim.learning_rate_schedule(0.035, plan, warmup_start_factor=0.01 / 0.035,
                                    cosine_over_warmup=True)
  cosine = lambda t: 0.035 * 0.5 * (1 + math.cos(math.pi * t / 400))
  assert float(lr(0)) == pytest.approx(0.01)
  assert float(lr(25)) == pytest.approx(0.01 + (cosine(50) - 0.01) * 25 / 50, rel=1e-6)
  assert float(lr(50)) == pytest.approx(0.035 * 0.96194, rel=1e-4)  # 0.962 x at epoch 5
  assert float(lr(200)) == pytest.approx(0.0175, rel=1e-6) and float(lr(400)) < 1e-9
  with pytest.raises(ValueError, match='exclusive'):
    optim.learning_rate_schedule(0.035, plan, cosine_by_epoch=True, cosine_over_warmup=True)


def multipliers(groups, **kw):
  model = models.create_model('mini', num_classes=5)
  params = convert.variable_shapes(model)['params']
  mults = optim.param_multipliers(params, param_groups=groups, **kw)
  names = flax.traverse_util.flatten_dict(params)
  flat = flax.traverse_util.flatten_dict(
      mults, is_leaf=lambda _, x: isinstance(x, tuple))
  family = models.family_of(model)
  return {family.param_name(path): flat[path] for path in names}


def test_official_param_groups_longest_key_alone_applies():
  by_name = multipliers(config_base.OFFICIAL_PARAM_GROUPS)
  expected = {  # RECIPES.md 2.4
      'backbone.pos_block.0.proj.0.weight': (1.0, 0.0),
      'backbone.pos_block.3.proj.0.bias': (1.0, 0.0),
      'backbone.blocks.0.0.norm1.weight': (0.1, 1.0),  # norms: lr x0.1 WITH decay
      'backbone.blocks.0.1.attn.norm.bias': (0.1, 1.0),
      'backbone.patch_embeds.0.norm.weight': (0.1, 1.0),
      'backbone.norm.weight': (0.1, 1.0),
      'backbone.blocks.0.1.attn.lr.1.weight': (0.1, 1.0),  # BatchNorm affine
      'backbone.blocks.0.0.attn.qkv.weight': (0.1, 1.0),
      'cls_head.fc_cls.weight': (1.0, 1.0),  # no key: base lr and decay, bias included
      'cls_head.fc_cls.bias': (1.0, 1.0),
  }
  assert {k: by_name[k] for k in expected} == expected
  counts = {m: sum(v == m for v in by_name.values()) for m in set(by_name.values())}
  assert counts[(1.0, 0.0)] == 8 and counts[(1.0, 1.0)] == 2  # 8 PEG tensors, 2 head
  assert optim.group_multipliers('x.aba', (('ba', 2.0, 1.0), ('ab', 3.0, 0.0))) == (3.0, 0.0)
  assert optim.group_multipliers('x', (('y', 2.0, 0.0),)) == (1.0, 1.0)


def test_without_groups_backbone_mult_and_no_decay_on_norm_and_pos_block():
  by_name = multipliers((), backbone_lr_mult=0.1)
  assert by_name['backbone.blocks.0.0.norm1.weight'] == (0.1, 0.0)
  assert by_name['backbone.pos_block.0.proj.0.weight'] == (0.1, 0.0)
  assert by_name['backbone.blocks.0.0.attn.qkv.weight'] == (0.1, 1.0)
  assert by_name['cls_head.fc_cls.weight'] == (1.0, 1.0)


def toy_params():
  return {'backbone': {'pos_block': jnp.ones(3), 'norm': jnp.ones(3), 'fc': jnp.ones(3)},
          'head': {'w': jnp.ones(3)}}


def first_update(tx, params, grads):
  updates, _ = tx.update(grads, tx.init(params), params)
  return {k: float(v[0]) for k, v in flax.traverse_util.flatten_dict(
      updates, sep='.').items()}


def test_adamw_applies_each_groups_lr_and_decay():
  plan = optim.plan_steps(100, 10, num_epochs=30, warmup_epochs=3)
  tx, _ = optim.create_optimizer(
      toy_params(), learning_rate=1e-3, plan=plan, weight_decay=0.02,
      name_fn='.'.join, param_groups=config_base.OFFICIAL_PARAM_GROUPS,
      warmup_start_factor=0.1, cosine_by_epoch=True)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, toy_params())
  # Zero gradients: the Adam term is 0, the update is -lr_g * wd_g * p with lr = 1e-4.
  got = first_update(tx, toy_params(), zeros)
  assert got == pytest.approx({'backbone.pos_block': 0.0, 'backbone.norm': -1e-4 * 0.1 * 0.02,
                               'backbone.fc': -1e-4 * 0.1 * 0.02, 'head.w': -1e-4 * 0.02},
                              rel=1e-5)
  with pytest.raises(ValueError, match='not both'):
    optim.create_optimizer(toy_params(), learning_rate=1e-3, plan=plan, weight_decay=0.0,
                           name_fn='.'.join, param_groups=(('fc', 1.0, 1.0),),
                           backbone_lr_mult=0.1)


@pytest.mark.parametrize('nesterov, second', [(True, 1 + 0.9 * 1.9), (False, 1.9)])
def test_sgd_momentum_nesterov_and_coupled_decay(nesterov, second):
  plan = optim.plan_steps(100, 10, num_epochs=30, warmup_epochs=0)  # lr 0.1 in epoch 0
  params = {'backbone': {'fc': jnp.zeros(3)}, 'head': {'w': jnp.ones(3)}}
  tx, _ = optim.create_optimizer(params, learning_rate=0.1, plan=plan, weight_decay=0.5,
                                 name_fn='.'.join, optimizer='sgd', momentum=0.9,
                                 nesterov=nesterov, cosine_by_epoch=True)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  state = tx.init(params)
  first, state = tx.update(grads, state, params)
  # head: g + wd * p = 1.5 (torch SGD: decay added to the gradient before momentum).
  first_fc = 1 + 0.9 * 1 if nesterov else 1.0
  assert float(first['backbone']['fc'][0]) == pytest.approx(-0.1 * first_fc)
  assert float(first['head']['w'][0]) == pytest.approx(-0.1 * 1.5 * (1.9 if nesterov else 1))
  second_update, _ = tx.update(grads, state, params)  # same params: g stays 1 for fc
  assert float(second_update['backbone']['fc'][0]) == pytest.approx(-0.1 * second)
  with pytest.raises(ValueError, match="'adamw' or 'sgd'"):
    optim.create_optimizer(params, learning_rate=0.1, plan=plan, weight_decay=0.0,
                           optimizer='lamb')


def test_partial_loading_keeps_what_fits_and_names_the_rest(tmp_path, caplog):
  # A 16-frame checkpoint into an 8-frame model, as the Tiny UCF-101 recipe does (32 -> 16).
  # Random arrays of the models' shapes stand in for trained and initial values (a real
  # model.init of even the nano model compiles for a minute on a busy 2-core CPU).
  source = models.create_model('nano', num_classes=5, video_size=(16, 64, 64))
  target = models.create_model('nano', num_classes=7)
  rng = np.random.default_rng(0)
  random_like = lambda model: jax.tree_util.tree_map(
      lambda s: rng.normal(size=s.shape).astype(s.dtype), convert.variable_shapes(model))
  state_dict = convert.to_pytorch(random_like(source), source)
  init = random_like(target)
  path = str(tmp_path / 'k400_16f.safetensors')
  convert.save_state_dict(state_dict, path)
  with pytest.raises(convert.ConversionError):
    train_lib.load_pretrained(path, target, jax.random.PRNGKey(0))
  with caplog.at_level(logging.WARNING):
    loaded = train_lib.load_pretrained(path, target, jax.random.PRNGKey(0), partial=True,
                                       init_variables=init)
  started = sorted(line.split()[1] for line in caplog.messages if 'started from init' in line)
  assert started == sorted([
      'backbone.blocks.0.1.attn.sr.weight', 'backbone.blocks.0.1.attn.lr.3.weight',
      'backbone.blocks.1.1.attn.sr.weight', 'backbone.blocks.1.1.attn.lr.3.weight',
      'backbone.blocks.2.1.attn.sr.weight', 'cls_head.fc_cls.weight', 'cls_head.fc_cls.bias'])
  assert any('shape: checkpoint (32, 1, 4, 4, 4), model (32, 1, 2, 4, 4)' in m
             for m in caplog.messages)
  out = convert.to_pytorch(loaded, target)
  from_init = convert.to_pytorch(init, target)
  for key, value in out.items():
    np.testing.assert_array_equal(value, (from_init if key in started else state_dict)[key],
                                  err_msg=key)
