"""The Token Labelling train step: the frozen teacher labels every token of the clip in
the same jitted step; the student learns from its video label and those soft targets."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from dualformer_jax import data
from dualformer_jax.token_labelling import losses
from dualformer_jax.token_labelling import targets as targets_lib
from dualformer_jax.token_labelling import teacher as teacher_lib
from dualformer_jax.train_state import TrainState


def make_train_step(model, teacher_model, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, *, gamma: float = 0.5, top_k: int = 5,
                    temporal: str = 'interleaved', fill: float = 0.0,
                    label_smoothing: float = 0.0, grad_accum_steps: int = 1,
                    axis_name: str | None = None, normalization=None) -> Callable:
  """`train_step(state, teacher_variables, batch) -> (state, metrics)`.

  `model` is a DualFormer with `token_head=True`; `teacher_model` any DualFormer, run in
  eval mode on the same normalized clips (no gradient), or None (offline Token
  Labelling): the soft targets are `batch['targets']` `[b, d, h, w, K]` and
  `teacher_variables` is unused. The teacher's variables are an
  argument, so under `jax.jit` they stay sharded device arrays, not baked-in constants.
  Metrics: `loss` (the total), `loss_cls`, `loss_token`, `accuracy` (video top-1),
  `grad_norm`, `lr`. With `axis_name` (pmap) gradients and metrics are averaged over it.
  """

  def train_step(state: TrainState, teacher_variables: dict[str, Any],
                 batch: dict[str, jax.Array]):
    video = batch['video']  # [b, t, h, w, 3] uint8
    clips = (data.normalize(video, *normalization) if normalization
             else data.normalize(video))  # [b, t, h, w, 3] float32
    labels = batch['label']
    rng = jax.random.fold_in(state.rng, state.step)
    if axis_name is not None:
      rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    if teacher_model is None:  # offline: targets from the stored labels
      stored = jnp.asarray(batch['targets'], jnp.float32)  # [b, d, h, w, K]
    else:
      teacher_logits = jax.lax.stop_gradient(teacher_lib.token_logits(
          teacher_model, teacher_variables, clips))  # [b, dt, h, w, K]

    def loss_fn(params):
      (cls_logits, token_logits), updates = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, clips, train=True,
          mutable=['batch_stats'], rngs={'dropout': rng},
          method='token_labelling_logits')  # [b, K], [b, d, h, w, K]
      if teacher_model is None:
        soft = stored
      else:
        soft = targets_lib.soft_targets(teacher_logits, token_logits.shape[1:4], top_k,
                                        temporal=temporal, fill=fill)
      total, cls_part, token_part = losses.loss(cls_logits, token_logits, soft, labels,
                                                gamma, label_smoothing)
      return total, (cls_logits, cls_part, token_part, updates)

    (loss, (cls_logits, cls_part, token_part, updates)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(cls_logits, -1) == labels)
    if axis_name is not None:
      grads, loss, cls_part, token_part, accuracy = jax.lax.pmean(
          (grads, loss, cls_part, token_part, accuracy), axis_name)
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, param_updates)
    metrics = {'loss': loss, 'loss_cls': cls_part, 'loss_token': token_part,
               'accuracy': accuracy, 'grad_norm': optax.global_norm(grads),
               'lr': schedule(state.step // grad_accum_steps)}
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=updates.get('batch_stats', state.batch_stats),
                              opt_state=opt_state)
    return new_state, metrics

  return train_step
