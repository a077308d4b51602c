"""The two DualFormer attentions: local windows (LW-MSA) and a global pyramid (GP-MSA).

Both take and return channels-last token grids `[b, d, h, w, c]`.

Speed (benchmarks/NOTES.md): the softmax attention runs head-major (`[..., heads,
tokens, head_dim]`, plain batched matrix multiplies). On CPU it runs in chunks (groups of
windows for LW-MSA, groups of queries for GP-MSA) whose logits fit in cache, each chunk
recomputed in the backward pass instead of storing its softmax weights; on GPU and TPU
it is one batched computation. Both give the same numbers up to float rounding.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models import formulations
from dualformer_jax.models import layers

Dtype = Any
Shape3 = tuple[int, int, int]

# The coarse level first pools each (1, 7, 7) patch, then the rest of the coarse kernel.
COARSE_FIRST_KERNEL = (1, 7, 7)

# CPU formulation (formulations.py): the float32 logits of one chunk stay below this...
CPU_CHUNK_BYTES = 4 * 2 ** 20
# ...unless that leaves fewer queries per chunk than this (too small a matrix multiply).
MIN_CHUNK_QUERIES = 128


def attention_chunk_bytes() -> int | None:
  """Logit bytes per attention chunk with the CPU formulations; None: one chunk (no loop)."""
  return CPU_CHUNK_BYTES if formulations.cpu() else None


def softmax_attention(q: jax.Array, k: jax.Array, v: jax.Array, dropout_rate: float = 0.0,
                      dropout_rng: jax.Array | None = None) -> jax.Array:
  """Head-major softmax attention: q `[..., n, e]`, k and v `[..., m, e]` -> `[..., n, e]`.

  Leading axes (batch, windows, heads) are batch axes. The softmax is in float32.
  `dropout_rng` (with a positive `dropout_rate`) drops attention weights as
  `nn.Dropout` does.
  """
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum('...ne,...me->...nm', q * scale, k)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(q.dtype)
  if dropout_rate > 0.0 and dropout_rng is not None:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0).astype(q.dtype)
  return jnp.einsum('...nm,...me->...ne', weights, v)


def _dropout_keys(module: nn.Module, rate: float, train: bool, num_chunks: int):
  """One dropout key per chunk when attention dropout is active, else zeros (unused)."""
  if train and rate > 0.0:
    return jax.random.split(module.make_rng('dropout'), num_chunks)
  return jnp.zeros((num_chunks, 2), jnp.uint32)


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


def windows_first(x: jax.Array, window: Shape3) -> jax.Array:
  """`[b, d, h, w, c]` -> `[windows, b, wd * wh * ww, c]`: windows lead, batch stays whole.

  Windows are in `(nd, nh, nw)` order and tokens in `(d, h, w)` order, as in
  `window_partition`; keeping the batch axis whole keeps its sharding.
  """
  b, d, h, w, c = x.shape
  wd, wh, ww = window
  x = x.reshape(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
  x = x.transpose(1, 3, 5, 0, 2, 4, 6, 7)  # [nd, nh, nw, b, wd, wh, ww, c]
  return x.reshape(-1, b, wd * wh * ww, c)


def windows_first_merge(windows: jax.Array, window: Shape3,
                        grid: tuple[int, int, int, int]) -> jax.Array:
  """Inverse of `windows_first`; `grid` is `(b, d, h, w)`."""
  b, d, h, w = grid
  wd, wh, ww = window
  c = windows.shape[-1]
  x = windows.reshape(d // wd, h // wh, w // ww, b, wd, wh, ww, c)
  x = x.transpose(3, 0, 4, 1, 5, 2, 6, 7)  # [b, nd, wd, nh, wh, nw, ww, c]
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
    heads, head_dim = self.num_heads, c // self.num_heads
    windows = windows_first(x, self.window_size)  # [nwin, b, n, c]
    qkv = layers.dense(3 * c, ('embed', 'qkv'), 'qkv', self.dtype, self.param_dtype,
                       use_bias=self.qkv_bias)(windows)  # [nwin, b, n, 3c]
    nwin, _, n, _ = qkv.shape
    num_chunks = formulations.chunk_count(nwin, b * heads * n * n * 4,
                                          attention_chunk_bytes())
    rate = self.attn_drop_rate if train else 0.0

    def attend(qkv, key):  # [w, b, n, 3c] for w windows -> [w, b, n, c]
      key = key[0]  # this chunk's dropout key
      t = qkv.reshape(*qkv.shape[:3], 3, heads, head_dim)
      t = t.transpose(3, 0, 1, 4, 2, 5)  # [3, w, b, heads, n, e]
      out = softmax_attention(t[0], t[1], t[2], rate, key)  # [w, b, heads, n, e]
      return out.transpose(0, 1, 3, 2, 4).reshape(qkv.shape[:3] + (c,))  # head-major

    keys = _dropout_keys(self, rate, train, num_chunks)
    out = formulations.map_chunks(attend, (qkv, keys), num_chunks)  # [nwin, b, n, c]
    out = layers.dense(c, ('heads', 'embed'), 'proj', self.dtype, self.param_dtype)(out)
    out = nn.Dropout(self.proj_drop_rate)(out, deterministic=not train)
    return windows_first_merge(out, self.window_size, (b, d, h, w))  # [b, d, h, w, c]


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
    m = kv.shape[1]
    kv = kv.reshape(b, m, 2, self.num_heads, head_dim).transpose(2, 0, 3, 1, 4)
    k, v = kv[0], kv[1]  # [b, heads, m, e]

    n = d * h * w
    num_chunks = formulations.chunk_count(n, b * self.num_heads * m * 4,
                                          attention_chunk_bytes(), MIN_CHUNK_QUERIES)
    rate = self.attn_drop_rate if train else 0.0

    def attend(q, key):  # [s, b, tokens, c] for s chunks of queries -> the same shape
      key = key[0]  # this chunk's dropout key
      heads = q.reshape(*q.shape[:3], self.num_heads, head_dim).transpose(0, 1, 3, 2, 4)
      out = softmax_attention(heads, k[None], v[None], rate, key)  # [s, b, heads, t, e]
      return out.transpose(0, 1, 3, 2, 4).reshape(q.shape)  # head-major channels

    # Queries in chunks along the tokens: [num_chunks, b, n / num_chunks, c].
    q = q.reshape(b, num_chunks, n // num_chunks, c).transpose(1, 0, 2, 3)
    keys = _dropout_keys(self, rate, train, num_chunks)
    out = formulations.map_chunks(attend, (q, keys), num_chunks)  # [chunks, b, n / chunks, c]
    out = out.transpose(1, 0, 2, 3).reshape(b, d, h, w, c)
    out = layers.dense(c, ('heads', 'embed'), 'proj', self.dtype, self.param_dtype)(out)
    return nn.Dropout(self.proj_drop_rate)(out, deterministic=not train)
