"""Optimizer, learning-rate schedule and loss of the official recipes (optax).

Official semantics (RECIPES.md 2.4, 2.5), each an option:
- parameter groups as mmcv `paramwise_cfg.custom_keys`: `(key, lr_mult, decay_mult)`
  rows matched against official parameter names, the LONGEST matching key alone applies
  (ties alphabetical); a parameter no key matches gets lr x1 and decay x1;
- linear warm-up per iteration from `warmup_start_factor` x the lr (mmcv `warmup_ratio`);
- cosine stepped once per epoch (mmcv `CosineAnnealing`, `by_epoch=True`) to `min_lr`;
- AdamW (decoupled decay) or SGD with momentum (optionally Nesterov, coupled decay).
"""

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from dualformer_jax import models

# Official recipes exempt these (by official parameter name) from weight decay.
NO_DECAY_NAME_PARTS = ('norm', 'pos_block')
NameFn = Callable[[tuple[str, ...]], str]


@dataclasses.dataclass(frozen=True)
class StepPlan:
  """Step counts derived from epochs and the (accumulated) batch."""
  steps_per_epoch: int  # optimizer steps per epoch
  total_steps: int  # optimizer steps in the run
  warmup_steps: int
  grad_accum_steps: int
  warmup_epochs: float | None = None  # unrounded, for per-iteration warm-up by epoch

  @property
  def total_micro_steps(self) -> int:
    """Train-step calls (each on one batch); equals total_steps without accumulation."""
    return self.total_steps * self.grad_accum_steps


def plan_steps(num_train_videos: int, batch_size: int, num_epochs: float,
               warmup_epochs: float, grad_accum_steps: int = 1,
               num_steps: int | None = None) -> StepPlan:
  """Optimizer steps per epoch = videos // (batch_size * grad_accum_steps)."""
  effective_batch = batch_size * grad_accum_steps
  steps_per_epoch = max(1, num_train_videos // effective_batch)
  total = int(num_steps) if num_steps else max(1, round(num_epochs * steps_per_epoch))
  warmup = min(total, round(warmup_epochs * steps_per_epoch))
  return StepPlan(steps_per_epoch, total, warmup, grad_accum_steps, float(warmup_epochs))


def learning_rate_schedule(base_lr: float, plan: StepPlan, *, warmup_start_factor: float = 0.0,
                           cosine_by_epoch: bool = False, min_lr: float = 0.0,
                           cosine_over_warmup: bool = False) -> optax.Schedule:
  """The learning rate at optimizer step `count` (0-based).

  Per step (default): linear warm-up from `warmup_start_factor * base_lr` to `base_lr`
  over `plan.warmup_steps`, then cosine to `min_lr`.

  `cosine_by_epoch` (mmcv CosineAnnealing, by_epoch, linear warm-up by epoch): with
  micro-batch t, I = micro-batches per epoch, e = t // I, E = total epochs,
  W = warmup_epochs * I, f = warmup_start_factor:
    r(e) = min_lr + (base_lr - min_lr) * (1 + cos(pi * e / E)) / 2   (once per epoch)
    lr(t) = r(e) * (f + (1 - f) * t / W) for t < W, else r(e); a fractional W keeps the
    value of t = floor(W) until the end of that epoch.
  An optimizer step uses the lr of the last micro-batch of its accumulation window.

  `cosine_over_warmup` (SlowFast, the LVT recipes; per step): the cosine runs over all
  steps, warm-up included, `c(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi t / T)) / 2`,
  and the warm-up goes linearly from `f * base_lr` to `c(W)`, where it hands over.
  """
  if cosine_over_warmup:
    if cosine_by_epoch:
      raise ValueError('config.train.cosine_over_warmup and config.train.cosine_by_epoch '
                       'are exclusive: choose one schedule.')
    total, warm = max(plan.total_steps, 1), plan.warmup_steps
    cosine = lambda t: min_lr + (base_lr - min_lr) * 0.5 * (1 + jnp.cos(jnp.pi * t / total))
    start = warmup_start_factor * base_lr

    def slowfast(count):
      t = jnp.asarray(count, jnp.float32)
      if warm <= 0:
        return cosine(t)
      return jnp.where(t < warm, start + (cosine(float(warm)) - start) * t / warm, cosine(t))

    return slowfast
  if not cosine_by_epoch:
    return optax.warmup_cosine_decay_schedule(
        init_value=warmup_start_factor * base_lr, peak_value=base_lr,
        warmup_steps=plan.warmup_steps,
        decay_steps=max(plan.total_steps, plan.warmup_steps + 1), end_value=min_lr)
  accum = plan.grad_accum_steps
  per_epoch = plan.steps_per_epoch * accum  # micro-batches per epoch
  epochs = plan.total_steps / plan.steps_per_epoch
  warmup_epochs = (plan.warmup_epochs if plan.warmup_epochs is not None
                   else plan.warmup_steps / plan.steps_per_epoch)
  w = warmup_epochs * per_epoch
  w_floor = math.floor(w)
  f = warmup_start_factor

  def schedule(count):
    t = jnp.asarray(count) * accum + (accum - 1)
    e = t // per_epoch
    regular = min_lr + (base_lr - min_lr) * 0.5 * (1 + jnp.cos(jnp.pi * e / epochs))
    if w <= 0:
      return regular
    factor = jnp.where(t < w, f + (1 - f) * t / w, 1.0)
    if w_floor < w:  # the value set at floor(W) stays for the rest of its epoch
      factor = jnp.where((t > w) & (e == w_floor // per_epoch),
                         f + (1 - f) * w_floor / w, factor)
    return regular * factor

  return schedule


def _dualformer_name(path: tuple[str, ...]) -> str:
  return models.families()['dualformer'].param_name(path)


def official_name(path: tuple[Any, ...], name_fn: NameFn | None = None) -> str:
  """The official name of the parameter at a `tree_map_with_path` path."""
  keys = tuple(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)
  return (name_fn or _dualformer_name)(keys)


def weight_decay_mask(params: Any, name_fn: NameFn | None = None) -> Any:
  """True where weight decay applies: not on norm or pos_block parameters."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not any(p in official_name(path, name_fn)
                              for p in NO_DECAY_NAME_PARTS), params)


ParamGroups = tuple[tuple[str, float, float], ...]


def group_multipliers(name: str, param_groups: ParamGroups) -> tuple[float, float]:
  """`(lr_mult, decay_mult)` of an official parameter name (mmcv custom_keys): the keys,
  longest first (ties alphabetical), are tried in turn; the first that is a substring of
  `name` alone applies; no match gives (1, 1)."""
  for key, lr_mult, decay_mult in sorted(param_groups, key=lambda g: (-len(g[0]), g[0])):
    if key in name:
      return float(lr_mult), float(decay_mult)
  return 1.0, 1.0


def param_multipliers(params: Any, *, param_groups: ParamGroups = (),
                      backbone_lr_mult: float = 1.0, name_fn: NameFn | None = None,
                      head_module: str = 'head') -> Any:
  """A tree of `(lr_mult, decay_mult)` per parameter.

  With `param_groups`: mmcv's rule (`group_multipliers`). Without: lr x
  `backbone_lr_mult` outside `head_module`, and no decay on names containing any of
  `NO_DECAY_NAME_PARTS`.
  """
  def rule(path, _):
    name = official_name(path, name_fn)
    if param_groups:
      return group_multipliers(name, param_groups)
    head = str(getattr(path[0], 'key', path[0])) == head_module
    decay = 0.0 if any(p in name for p in NO_DECAY_NAME_PARTS) else 1.0
    return (1.0 if head else float(backbone_lr_mult), decay)
  return jax.tree_util.tree_map_with_path(rule, params)


def create_optimizer(params: Any, *, learning_rate: float, plan: StepPlan,
                     weight_decay: float, b1: float = 0.9, b2: float = 0.999,
                     backbone_lr_mult: float = 1.0, grad_clip_norm: float | None = None,
                     name_fn: NameFn | None = None, head_module: str = 'head',
                     param_groups: ParamGroups = (), optimizer: str = 'adamw',
                     momentum: float = 0.9, nesterov: bool = False,
                     warmup_start_factor: float = 0.0, cosine_by_epoch: bool = False,
                     min_lr: float = 0.0, cosine_over_warmup: bool = False
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW or SGD with the schedule, parameter groups and decay of the config.

  `name_fn` maps a parameter path to its official name (the family's `param_name`;
  default DualFormer's); `head_module` is the classifier's entry in `params`.
  `param_groups` (mmcv custom_keys, see `param_multipliers`) replaces
  `backbone_lr_mult` and the `NO_DECAY_NAME_PARTS` rule. Returns the transformation and
  the base learning-rate schedule (lr x1, for logging).
  """
  if param_groups and backbone_lr_mult != 1.0:
    raise ValueError('Set either train.param_groups or train.backbone_lr_mult, not both '
                     '(param_groups gives every lr multiplier).')
  if optimizer not in ('adamw', 'sgd'):
    raise ValueError(f"config.train.optimizer must be 'adamw' or 'sgd', got {optimizer!r}.")
  schedule = learning_rate_schedule(learning_rate, plan,
                                    warmup_start_factor=warmup_start_factor,
                                    cosine_by_epoch=cosine_by_epoch, min_lr=min_lr,
                                    cosine_over_warmup=cosine_over_warmup)
  mults = param_multipliers(params, param_groups=tuple(tuple(g) for g in param_groups),
                            backbone_lr_mult=backbone_lr_mult, name_fn=name_fn,
                            head_module=head_module)
  is_mult = lambda x: isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], float)
  labels = jax.tree_util.tree_map(lambda m: f'lr{m[0]:g}_wd{m[1]:g}', mults, is_leaf=is_mult)
  groups = {f'lr{m[0]:g}_wd{m[1]:g}': m for m in jax.tree_util.tree_leaves(
      mults, is_leaf=is_mult)}

  def transform(lr_mult: float, decay_mult: float) -> optax.GradientTransformation:
    lr = lambda step: schedule(step) * lr_mult
    if optimizer == 'adamw':
      return optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay * decay_mult)
    decay = [optax.add_decayed_weights(weight_decay * decay_mult)] if decay_mult else []
    return optax.chain(*decay, optax.sgd(lr, momentum=momentum or None, nesterov=nesterov))

  tx = optax.multi_transform({label: transform(*m) for label, m in groups.items()}, labels)
  if grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)
  if plan.grad_accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=plan.grad_accum_steps)
  return tx, schedule


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
                  ) -> jax.Array:
  """Mean softmax cross-entropy with optional label smoothing.

  `labels`: int `[b]`, or soft targets `[b, classes]` (e.g. mixup's, rows summing to 1).
  Smoothing maps targets `y` to `(1 - s) * y + s / classes` (the official
  label-smoothing loss; for mixed targets the same as mixing the smoothed one-hots).
  """
  if labels.ndim == logits.ndim:
    targets = labels.astype(jnp.float32)  # [b, classes]
  else:
    targets = jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))
