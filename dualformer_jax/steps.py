"""Pure train and eval steps; `train_lib` wraps them in `jax.jit` (sharded) or `jax.pmap`."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from dualformer_jax import data
from dualformer_jax import optim
from dualformer_jax.train_state import TrainState


Normalization = tuple[tuple[float, ...], tuple[float, ...]] | None  # (mean, std), 0-255
_MIXUP_STREAM = 0x6D6978  # folded into the step rng for mixup (dropout keeps the rng)
VIEW_REDUCTIONS = ('mean_softmax', 'sum_logits')


def _normalize(video: jax.Array, normalization: Normalization) -> jax.Array:
  return data.normalize(video, *normalization) if normalization else data.normalize(video)


def mixup(rng: jax.Array, clips: jax.Array, alpha: float
          ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Batch-level mixup: `lam ~ Beta(alpha, alpha)`, one per call, and a random pairing.

  Returns `(lam * clips + (1 - lam) * clips[perm], lam, perm)`; mix the targets with
  `mixup_targets`. Under pmap each device mixes its own share with its own `lam` (as
  the official per-GPU mixup); under jit the whole global batch is one batch.
  """
  lam_rng, perm_rng = jax.random.split(rng)
  lam = jax.random.beta(lam_rng, alpha, alpha).astype(clips.dtype)
  perm = jax.random.permutation(perm_rng, clips.shape[0])
  return lam * clips + (1 - lam) * clips[perm], lam, perm  # [b, t, h, w, 3]


def mixup_targets(labels: jax.Array, lam: jax.Array, perm: jax.Array, num_classes: int
                  ) -> jax.Array:
  """Soft targets `lam * one_hot(labels) + (1 - lam) * one_hot(labels[perm])`, `[b, k]`."""
  one_hot = jax.nn.one_hot(labels, num_classes)
  return lam * one_hot + (1 - lam) * one_hot[perm]


def make_train_step(model, tx: optax.GradientTransformation, schedule: optax.Schedule, *,
                    label_smoothing: float = 0.0, grad_accum_steps: int = 1,
                    axis_name: str | None = None, normalization: Normalization = None,
                    mixup_alpha: float = 0.0) -> Callable:
  """`train_step(state, batch) -> (state, metrics)`; batch `video` uint8 `[b, t, h, w, 3]`.

  With `axis_name` (pmap), gradients and metrics are averaged over that axis.
  `normalization` is the input `(mean, std)` on a 0-255 scale (default ImageNet's).
  `mixup_alpha > 0` mixes every batch (`mixup`) and trains on the soft targets (smoothed
  by `label_smoothing`); the accuracy is then against the dominant label of each clip.
  """

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    clips = _normalize(batch['video'], normalization)  # [b, t, h, w, 3] float32
    labels = batch['label']
    rng = jax.random.fold_in(state.rng, state.step)
    if axis_name is not None:
      rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    targets = labels
    if mixup_alpha:
      clips, lam, perm = mixup(jax.random.fold_in(rng, _MIXUP_STREAM), clips, mixup_alpha)
      labels = jnp.where(lam >= 0.5, labels, labels[perm])  # the dominant label, [b]

    def loss_fn(params):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, clips, train=True,
          mutable=['batch_stats'], rngs={'dropout': rng})
      y = mixup_targets(targets, lam, perm, logits.shape[-1]) if mixup_alpha else targets
      return optim.cross_entropy(logits, y, label_smoothing), (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    if axis_name is not None:
      grads, loss, accuracy = jax.lax.pmean((grads, loss, accuracy), axis_name)
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, param_updates)
    metrics = {'loss': loss, 'accuracy': accuracy, 'grad_norm': optax.global_norm(grads),
               'lr': schedule(state.step // grad_accum_steps)}
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=updates.get('batch_stats', state.batch_stats),
                              opt_state=opt_state)
    return new_state, metrics

  return train_step


def reduce_views(logits: jax.Array, views: int, view_reduction: str = 'mean_softmax'
                 ) -> jax.Array:
  """Per-video scores `[b, classes]` from view logits `[b * views, classes]` (clip-major):
  the mean of the softmax probabilities (`'mean_softmax'`, DualFormer/mmaction2) or the
  sum of the logits (`'sum_logits'`, the LVT test, SlowFast `ENSEMBLE_METHOD sum`)."""
  per_video = logits.astype(jnp.float32).reshape(-1, views, logits.shape[-1])  # [b, v, k]
  if view_reduction == 'mean_softmax':
    return jax.nn.softmax(per_video, -1).mean(axis=1)
  if view_reduction == 'sum_logits':
    return per_video.sum(axis=1)
  raise ValueError(f'view_reduction must be one of {VIEW_REDUCTIONS}, got {view_reduction!r}.')


def make_eval_step(model, num_classes: int, axis_name: str | None = None, *,
                   normalization: Normalization = None,
                   view_reduction: str = 'mean_softmax') -> Callable:
  """`eval_step(state_vars, batch) -> sums` over the official multi-view protocol.

  batch: `video` uint8 `[b, views, t, h, w, 3]`, `label` `[b]`, `mask` `[b]`. The views
  of each video are combined by `reduce_views` (`view_reduction`); the sums count
  correct top-1 and top-5 predictions and per-class totals of the real (mask) videos.
  """
  if view_reduction not in VIEW_REDUCTIONS:
    raise ValueError(f'view_reduction must be one of {VIEW_REDUCTIONS}, got {view_reduction!r}.')
  top_k = min(5, num_classes)

  def eval_step(variables: dict[str, Any], batch: dict[str, jax.Array]):
    video = batch['video']
    b, views = video.shape[:2]
    clips = _normalize(video.reshape(b * views, *video.shape[2:]),
                       normalization)  # [b*v, t, h, w, 3]
    logits = model.apply(variables, clips, train=False)
    scores = reduce_views(logits, views, view_reduction)  # [b, classes]
    labels, mask = batch['label'], batch['mask'].astype(jnp.float32)
    _, top = jax.lax.top_k(scores, top_k)  # [b, k]
    correct1 = (top[:, 0] == labels).astype(jnp.float32) * mask
    correct5 = jnp.any(top == labels[:, None], axis=1).astype(jnp.float32) * mask
    per_class = jax.nn.one_hot(labels, num_classes) * mask[:, None]  # [b, classes]
    sums = {
        'correct1': correct1.sum(), 'correct5': correct5.sum(), 'count': mask.sum(),
        'class_correct': (per_class * correct1[:, None]).sum(0),
        'class_count': per_class.sum(0),
    }
    if axis_name is not None:
      sums = jax.lax.psum(sums, axis_name)
    return sums

  return eval_step


def summarize_eval(sums: dict[str, Any]) -> dict[str, float]:
  """Accumulated eval sums -> top1, top5, mean class accuracy (in %), videos."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  count = float(sums['count'])
  class_count = np.asarray(sums['class_count'])
  seen = class_count > 0
  class_acc = np.asarray(sums['class_correct'])[seen] / class_count[seen]
  return {
      'top1': 100.0 * float(sums['correct1']) / max(count, 1.0),
      'top5': 100.0 * float(sums['correct5']) / max(count, 1.0),
      'mean_class_accuracy': 100.0 * float(class_acc.mean()) if seen.any() else 0.0,
      'num_videos': int(count),
  }
