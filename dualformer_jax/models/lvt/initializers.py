"""The official LVT initializers and the Linear / LayerNorm helpers built on them.

From scratch the official model draws every Linear from `trunc_normal(std 0.02)` with
bounds +-2 *absolute* (timm's `trunc_normal_`: truncation at 100 std, in effect a normal),
biases 0; the patch-embedding conv and the depthwise conv from `normal(0, sqrt(2 /
fan_out))`; `new_fc` from `normal(0, 0.001)`; LayerNorms 1 and 0; `temp_embed` 0. The Linear std is
the models' `linear_init_std` (0.02 but for `lvt_nano`, see its variant).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models import layers

Dtype = Any

LINEAR_STD = 0.02
TRUNCATION_BOUND = 2.0  # absolute, as timm's trunc_normal_(std=.02) defaults
NEW_FC_STD = 0.001


def trunc_normal(std: float = LINEAR_STD, bound: float = TRUNCATION_BOUND):
  """`normal(0, std)` truncated to `[-bound, bound]` (absolute bounds)."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.truncated_normal(key, -bound / std, bound / std, shape, dtype) * std

  return init


def fan_out_normal(fan_out: int):
  """`normal(0, sqrt(2 / fan_out))` (the official conv init, fan_out = k*k*out/groups)."""
  return nn.initializers.normal(stddev=float(np.sqrt(2.0 / fan_out)))


def dense(features: int, axes: tuple[Any, Any], name: str, dtype: Dtype, param_dtype: Dtype,
          use_bias: bool = True, std: float = LINEAR_STD) -> nn.Module:
  """A Linear layer (kernel `[in, out]` with logical `axes`), `trunc_normal(std)` init
  (official: `std` 0.02)."""
  return layers.dense(features, axes, name, dtype, param_dtype, use_bias,
                      kernel_init=trunc_normal(std))


def layer_norm(epsilon: float, name: str, dtype: Dtype, param_dtype: Dtype) -> nn.LayerNorm:
  """LayerNorm with PyTorch's two-pass variance and the given epsilon."""
  return nn.LayerNorm(
      epsilon=epsilon, dtype=dtype, param_dtype=param_dtype, use_fast_variance=False,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ('norm',)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ('norm',)),
      name=name)
