"""LVT's linear attention with feature fixation (`LinearAttention`, `LINEAR_TYPE relu`).

Works on token grids `[b, t, h, w, c]` and attends either over time (for every token
position) or over space (for every frame), so neither needs a transpose.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dualformer_jax.models.lvt import initializers

Dtype = Any

DENOMINATOR_EPS = 1e-6  # Added to q' . sum_j k'_j.

# einsum subscripts per attended axis: (q or k [b,t,h,w,n,d] -> k'v, q' k'v, q' sum k').
_SUBSCRIPTS = {
    'time': ('bthwnd,bthwne->bhwnde', 'bthwnd,bhwnde->bthwne', 'bthwnd,bhwnd->bthwn', (1,)),
    'space': ('bthwnd,bthwne->btnde', 'bthwnd,btnde->bthwne', 'bthwnd,btnd->bthwn', (2, 3)),
}


def feature_map(x: jax.Array, head_dim: int) -> jax.Array:
  """`phi(x) = relu(x) + e^-0.5`, `e` the head dim: an additive offset (official; `qk_scale`
  is ignored)."""
  return jax.nn.relu(x) + head_dim ** -0.5


def linear_attention(q: jax.Array, k: jax.Array, v: jax.Array, over: str) -> jax.Array:
  """Non-causal `(q' (k'^T v)) / (q' . sum k' + eps)` per sequence and head.

  q, k, v: `[b, t, h, w, heads, e]` (feature-mapped q and k); `over` is `'time'` or
  `'space'`. Sums are accumulated in float32.
  """
  kv_sub, out_sub, den_sub, seq_axes = _SUBSCRIPTS[over]
  f32 = jnp.float32
  kv = jnp.einsum(kv_sub, k, v, preferred_element_type=f32)  # [b, *, heads, e, e]
  k_sum = jnp.sum(k, axis=seq_axes, dtype=f32)  # [b, *, heads, e]
  num = jnp.einsum(out_sub, q.astype(f32), kv)  # [b, t, h, w, heads, e]
  den = jnp.einsum(den_sub, q.astype(f32), k_sum) + DENOMINATOR_EPS  # [b, t, h, w, heads]
  return (num / den[..., None]).astype(q.dtype)


class LinearAttention(nn.Module):
  """qkv -> shift k, v -> phi -> gate q', k' -> linear attention -> proj.

  Attributes:
    num_heads: heads of `e = c / num_heads` channels.
    over: attended axis, `'time'` (sequences over frames) or `'space'` (over tokens).
    shift: the neighbourhood shift applied to k and v, `[b, t, h, w, c]` -> same.
    share_gate: one gate Linear (`pgate`) for q' and k' instead of `q_gate`, `k_gate`.
  """
  num_heads: int  # Attention heads.
  over: str  # 'time' or 'space'.
  shift: Callable[[jax.Array], jax.Array]  # Shift of k and v (no parameters).
  share_gate: bool = False  # One gate for q' and k' (pgate).
  qkv_bias: bool = True  # Bias in the qkv projection.
  attn_drop_rate: float = 0.0  # Dropout on the gated q' and k'.
  proj_drop_rate: float = 0.0  # Dropout after the output projection.
  linear_init_std: float = initializers.LINEAR_STD  # Linear kernels' init std.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  def _dense(self, features: int, axes: tuple[Any, Any], name: str,
             use_bias: bool = True) -> nn.Module:
    return initializers.dense(features, axes, name, self.dtype, self.param_dtype, use_bias,
                              self.linear_init_std)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = x.shape[-1]
    heads, e = self.num_heads, c // self.num_heads
    qkv = self._dense(3 * c, ('embed', 'qkv'), 'qkv', self.qkv_bias)(x)  # [b, t, h, w, 3c]
    q, k, v = jnp.split(qkv, 3, axis=-1)  # [b, t, h, w, c] each
    self.sow('intermediates', 'shift_k_in', k)
    k, v = self.shift(k), self.shift(v)
    self.sow('intermediates', 'shift_k_out', k)
    split_heads = lambda y: y.reshape(*y.shape[:-1], heads, e)
    q, k, v = split_heads(q), split_heads(k), split_heads(v)  # [b, t, h, w, heads, e]
    q, k = feature_map(q, e), feature_map(k, e)

    # Feature fixation: a per-head gate from [q' | k' | v] (one Linear for all heads).
    cat = jnp.concatenate([q, k, v], axis=-1)  # [b, t, h, w, heads, 3e]
    gate_axes = (None, None)  # tiny [3e, e] kernels: never sharded
    if self.share_gate:
      logits = self._dense(e, gate_axes, 'pgate')(cat)  # [b, t, h, w, heads, e]
      self.sow('intermediates', 'q_gate_logits', logits)
      q_gate = k_gate = jax.nn.sigmoid(logits)
    else:
      q_logits = self._dense(e, gate_axes, 'q_gate')(cat)
      self.sow('intermediates', 'q_gate_logits', q_logits)
      q_gate = jax.nn.sigmoid(q_logits)
      k_gate = jax.nn.sigmoid(self._dense(e, gate_axes, 'k_gate')(cat))
    q, k = q * q_gate, k * k_gate
    q = nn.Dropout(self.attn_drop_rate)(q, deterministic=not train)
    k = nn.Dropout(self.attn_drop_rate)(k, deterministic=not train)

    out = linear_attention(q, k, v, self.over)  # [b, t, h, w, heads, e]
    out = out.reshape(*out.shape[:-2], c)  # heads concatenated, c = head * e + j
    out = self._dense(c, ('heads', 'embed'), 'proj')(out)
    return nn.Dropout(self.proj_drop_rate)(out, deterministic=not train)
