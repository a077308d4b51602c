"""The Token Labelling student head (official `I3DHead_TL`): video and per-token logits."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dualformer_jax.models import layers

Dtype = Any

# Widths of the token branch relative to the feature width C: C -> 2C -> 4C -> K.
TOKEN_WIDTHS = (2, 4)
# Flax module names of the token branch's Linears; the official indices inside
# `cls_head.token_linear` (1 and 4 are Dropouts, 2 and 5 ReLUs).
TOKEN_LAYERS = ('token_linear_0', 'token_linear_3', 'token_linear_6')


def _torch_linear(features: int, fan_in: int, axes: tuple[str, str], name: str,
                  dtype: Dtype, param_dtype: Dtype) -> layers.Dense:
  """A Linear with PyTorch's default init: weight and bias U(+-1/sqrt(fan_in))."""
  return layers.Dense(
      features, dtype=dtype, param_dtype=param_dtype, name=name,
      kernel_init=nn.with_logical_partitioning(layers.torch_conv_default_init((0,)), axes),
      bias_init=nn.with_logical_partitioning(layers.torch_conv_bias_init(fan_in), (axes[1],)))


class TokenLabellingHead(nn.Module):
  """Video branch (mean -> Dropout -> `fc_cls`) and token branch (a 3-layer MLP per token).

  Attributes:
    num_classes: K, the outputs of both branches.
    dropout_rate: dropout of the video branch, before `fc_cls`.
    token_dropout_rate: dropout after each hidden Linear of the token branch (official:
      0.5, the same as the video branch's); the token branch reads the features directly.
  """
  num_classes: int
  dropout_rate: float = 0.5
  token_dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array, train: bool = False
               ) -> tuple[jax.Array, jax.Array]:
    """`features [b, d, h, w, c]` -> `(cls_logits [b, K], token_logits [b, d, h, w, K])`."""
    channels = features.shape[-1]
    features = features.astype(self.dtype)
    x = jnp.mean(features.astype(jnp.float32), axis=(1, 2, 3)).astype(self.dtype)  # [b, c]
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    cls_logits = layers.dense(self.num_classes, ('embed', 'classes'), 'fc_cls', self.dtype,
                              self.param_dtype,
                              kernel_init=nn.initializers.normal(stddev=0.01))(x)  # [b, K]

    widths = [channels * m for m in TOKEN_WIDTHS] + [self.num_classes]
    axes = (('embed', 'mlp'), ('embed', 'mlp'), ('mlp', 'classes'))
    y, fan_in = features, channels  # [b, d, h, w, c]
    for i, (width, name, ax) in enumerate(zip(widths, TOKEN_LAYERS, axes)):
      y = _torch_linear(width, fan_in, ax, name, self.dtype, self.param_dtype)(y)
      if i < len(widths) - 1:  # Dropout then ReLU (the official order)
        y = nn.Dropout(self.token_dropout_rate)(y, deterministic=not train)
        y = nn.relu(y)
      fan_in = width
    return cls_logits.astype(jnp.float32), y.astype(jnp.float32)  # [b, K], [b, d, h, w, K]
