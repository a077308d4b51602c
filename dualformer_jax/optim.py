"""Optimizer, learning-rate schedule and loss of the official recipes (optax)."""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
import flax

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
  return StepPlan(steps_per_epoch, total, warmup, grad_accum_steps)


def learning_rate_schedule(base_lr: float, plan: StepPlan) -> optax.Schedule:
  """Linear warm-up from 0 to `base_lr`, then cosine to 0 (per optimizer step)."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=base_lr, warmup_steps=plan.warmup_steps,
      decay_steps=max(plan.total_steps, plan.warmup_steps + 1), end_value=0.0)


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


def create_optimizer(params: Any, *, learning_rate: float, plan: StepPlan,
                     weight_decay: float, b1: float = 0.9, b2: float = 0.999,
                     backbone_lr_mult: float = 1.0, grad_clip_norm: float | None = None,
                     name_fn: NameFn | None = None, head_module: str = 'head'
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with the official schedule, decay mask and backbone learning-rate multiplier.

  `name_fn` maps a parameter path to its official name (the family's `param_name`;
  default DualFormer's); `head_module` is the classifier's entry in `params`.
  Returns the transformation and the head's learning-rate schedule (for logging).
  """
  schedule = learning_rate_schedule(learning_rate, plan)
  mask = weight_decay_mask(params, name_fn)

  def adamw(lr_mult: float) -> optax.GradientTransformation:
    return optax.adamw(lambda step: schedule(step) * lr_mult, b1=b1, b2=b2,
                       weight_decay=weight_decay, mask=mask)

  tx = optax.multi_transform(
      {'backbone': adamw(backbone_lr_mult), 'head': adamw(1.0)},
      flax.traverse_util.path_aware_map(
          lambda path, _: 'head' if path[0] == head_module else 'backbone', params))
  if grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)
  if plan.grad_accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=plan.grad_accum_steps)
  return tx, schedule


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
                  ) -> jax.Array:
  """Mean softmax cross-entropy with optional label smoothing; labels are int `[b]`."""
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))
