"""The Token Labelling loss (official `SoftCE_TL`): video cross entropy plus a dense
soft cross entropy over every token."""

import jax
import jax.numpy as jnp
import optax


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over all rows (every leading axis) of `-sum_k targets * log_softmax(logits)`."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.mean(-jnp.sum(jax.lax.stop_gradient(targets) * logp, axis=-1))


def loss(cls_logits: jax.Array, token_logits: jax.Array, targets: jax.Array,
         labels: jax.Array, gamma: float = 0.5, label_smoothing: float = 0.0
         ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`(total, cls_part, token_part)`, total = gamma * cls_part + (1 - gamma) * token_part.

  cls_logits `[b, K]` with int labels `[b]`; token_logits and soft targets
  `[b, d, h, w, K]` (the targets get no gradient). `label_smoothing` (official: none)
  applies to the video part only.
  """
  hard = jax.nn.one_hot(labels, cls_logits.shape[-1])  # [b, K]
  if label_smoothing:
    hard = optax.smooth_labels(hard, label_smoothing)
  cls_part = jnp.mean(optax.softmax_cross_entropy(cls_logits.astype(jnp.float32), hard))
  token_part = soft_cross_entropy(token_logits, targets)
  return gamma * cls_part + (1.0 - gamma) * token_part, cls_part, token_part
