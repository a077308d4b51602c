"""The two DualFormer attentions: local windows (LW-MSA) and a global pyramid (GP-MSA).

Both take and return channels-last token grids `[b, d, h, w, c]`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models import layers

Dtype = Any
Shape3 = tuple[int, int, int]

# The coarse level first pools each (1, 7, 7) patch, then the rest of the coarse kernel.
COARSE_FIRST_KERNEL = (1, 7, 7)


def multi_head_attention(q: jax.Array, k: jax.Array, v: jax.Array, dropout: nn.Module,
                         train: bool) -> jax.Array:
  """Softmax attention; q `[b, n, heads, e]`, k and v `[b, m, heads, e]` -> `[b, n, heads, e]`."""
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum('bnhe,bmhe->bhnm', q * scale, k)  # [b, heads, n, m]
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(q.dtype)
  weights = dropout(weights, deterministic=not train)
  return jnp.einsum('bhnm,bmhe->bnhe', weights, v)


def window_partition(x: jax.Array, window: Shape3) -> jax.Array:
  """`[b, d, h, w, c]` -> `[b * windows, wd * wh * ww, c]`, tokens in (d, h, w) order."""
  b, d, h, w, c = x.shape
  wd, wh, ww = window
  x = x.reshape(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)  # [b, nd, nh, nw, wd, wh, ww, c]
  return x.reshape(-1, wd * wh * ww, c)


def window_merge(windows: jax.Array, window: Shape3, grid: tuple[int, int, int, int]) -> jax.Array:
  """Inverse of `window_partition`; `grid` is `(b, d, h, w)`."""
  b, d, h, w = grid
  wd, wh, ww = window
  c = windows.shape[-1]
  x = windows.reshape(b, d // wd, h // wh, w // ww, wd, wh, ww, c)
  x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)  # [b, nd, wd, nh, wh, nw, ww, c]
  return x.reshape(b, d, h, w, c)


class LocalWindowAttention(nn.Module):
  """LW-MSA: full self-attention inside non-overlapping space-time windows.

  Attributes:
    num_heads: attention heads; channels must divide evenly.
    window_size: `(wd, wh, ww)`; the grid must be divisible by it.
  """
  num_heads: int  # Attention heads.
  window_size: Shape3  # Window extent (wd, wh, ww).
  qkv_bias: bool = True  # Bias in the qkv projection.
  attn_drop_rate: float = 0.0  # Dropout on attention weights.
  proj_drop_rate: float = 0.0  # Dropout after the output projection.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b, d, h, w, c = x.shape
    head_dim = c // self.num_heads
    windows = window_partition(x, self.window_size)  # [b * nwin, n, c]
    qkv = layers.dense(3 * c, ('embed', 'qkv'), 'qkv', self.dtype, self.param_dtype,
                       use_bias=self.qkv_bias)(windows)  # [b * nwin, n, 3c]
    qkv = qkv.reshape(*qkv.shape[:2], 3, self.num_heads, head_dim)  # [bw, n, 3, heads, e]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    out = multi_head_attention(q, k, v, nn.Dropout(self.attn_drop_rate), train)
    out = out.reshape(*out.shape[:2], c)  # [b * nwin, n, c], head-major channels
    out = layers.dense(c, ('heads', 'embed'), 'proj', self.dtype, self.param_dtype)(out)
    out = nn.Dropout(self.proj_drop_rate)(out, deterministic=not train)
    return window_merge(out, self.window_size, (b, d, h, w))  # [b, d, h, w, c]


class GlobalPyramidAttention(nn.Module):
  """GP-MSA: every token attends to a small pyramid of pooled keys and values.

  The fine level pools the grid with a depthwise strided conv (`fine_kernel`); the
  optional coarse level pools (1, 7, 7) patches, applies BatchNorm and ReLU, then pools
  with `coarse_kernel`. With `fine_kernel == (1, 1, 1)` there is no pooling: plain
  global attention over all tokens.

  Attributes:
    num_heads: attention heads.
    fine_kernel: kernel = stride of the fine pooling.
    coarse_kernel: kernel = stride of the coarse level's second pooling, or None for no
      coarse level.
  """
  num_heads: int  # Attention heads.
  fine_kernel: Shape3  # Fine pooling kernel = stride.
  coarse_kernel: Shape3 | None  # Second coarse pooling kernel, None: no coarse level.
  qkv_bias: bool = True  # Bias in the q and kv projections.
  attn_drop_rate: float = 0.0
  proj_drop_rate: float = 0.0
  bn_axis_name: str | None = None  # pmap axis for global BatchNorm statistics.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @property
  def pools(self) -> bool:
    return int(np.prod(self.fine_kernel)) > 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b, d, h, w, c = x.shape
    head_dim = c // self.num_heads
    dense = lambda n, axes, name: layers.dense(n, axes, name, self.dtype, self.param_dtype,
                                               use_bias=self.qkv_bias)
    q = dense(c, ('embed', 'heads'), 'q')(x)  # [b, d, h, w, c]
    q = q.reshape(b, d * h * w, self.num_heads, head_dim)  # [b, n, heads, e]

    if self.pools:
      pooled = [layers.DepthwisePool3D(self.fine_kernel, self.dtype, self.param_dtype,
                                       name='sr')(x)]  # [b, d', h', w', c]
      if self.coarse_kernel is not None:
        y = layers.DepthwisePool3D(COARSE_FIRST_KERNEL, self.dtype, self.param_dtype,
                                   name='lr_pool1')(x)
        y = layers.BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype,
                             param_dtype=self.param_dtype, name='lr_bn')(y, train)
        y = nn.relu(y)
        y = layers.DepthwisePool3D(self.coarse_kernel, self.dtype, self.param_dtype,
                                   name='lr_pool2')(y)  # [b, d'', h'', w'', c]
        pooled.append(y)
      kv_tokens = jnp.concatenate([p.reshape(b, -1, c) for p in pooled], axis=1)  # [b, m, c]
      kv_tokens = layers.layer_norm('norm', self.dtype, self.param_dtype)(kv_tokens)
    else:
      kv_tokens = x.reshape(b, d * h * w, c)  # [b, n, c]

    kv = dense(2 * c, ('embed', 'kv'), 'kv')(kv_tokens)  # [b, m, 2c]
    kv = kv.reshape(b, -1, 2, self.num_heads, head_dim)  # [b, m, 2, heads, e]
    out = multi_head_attention(q, kv[:, :, 0], kv[:, :, 1],
                               nn.Dropout(self.attn_drop_rate), train)  # [b, n, heads, e]
    out = out.reshape(b, d, h, w, c)
    out = layers.dense(c, ('heads', 'embed'), 'proj', self.dtype, self.param_dtype)(out)
    return nn.Dropout(self.proj_drop_rate)(out, deterministic=not train)
