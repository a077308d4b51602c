"""Mobile-Former building blocks, for images (2D) and clips (3D) alike.

Feature maps are channels-last grids `[b, *grid, c]`, with `grid = (h, w)` for the image
model and `(t, h, w)` for the video model; tokens are `[b, m, d]`. The spatial rank is
set by `temporal_kernel`: `None` builds 2D kernels, an integer builds 3D kernels of that
temporal extent (time is never strided).

Official semantics kept here (the official model is Chen et al., CVPR 2022):
- Attention heads split channels into contiguous blocks (`reshape(..., heads, c / heads)`).
- Mobile->Former: queries from the tokens, keys and values the raw feature map, a
  dynamic gate `2 * h_sigmoid(Linear(z))`, post-norm residual.
- Former: queries projected, keys and values the raw tokens; 2x FFN with exact GELU.
- Former->Mobile: queries the raw feature map, keys and values projected from tokens.
- Dynamic ReLU coefficients come from token 0 through a 2-layer MLP per site.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models import formulations
from dualformer_jax.models import layers

Dtype = Any

BRIDGE_HEADS = 2  # Mobile->Former and Former->Mobile.
FORMER_HEADS = 4
FFN_RATIO = 2  # The Former's FFN expands 2x.
HYPER_REDUCTION = 4  # Dynamic-ReLU hyper-function: d -> d / 4 -> 2 K.

# Official initializers: Linear N(0, 0.01) with zero bias; conv N(0, sqrt(2 / fan_out)).
linear_init = nn.initializers.normal(stddev=0.01)
token_init = nn.initializers.normal(stddev=1.0)  # nn.Embedding's default.

_KERNEL_AXES = {2: ('kernel_h', 'kernel_w'), 3: ('kernel_t', 'kernel_h', 'kernel_w')}


def conv_init(key, shape, dtype=jnp.float32):
  """N(0, sqrt(2 / (prod(kernel) * out_channels))); Flax kernel `[*kernel, in/g, out]`."""
  fan_out = int(np.prod(shape[:-2])) * shape[-1]
  return jax.random.normal(key, shape, dtype) * np.sqrt(2.0 / fan_out).astype(dtype)


def h_sigmoid(x: jax.Array) -> jax.Array:
  return jax.nn.relu6(x + 3.0) / 6.0


def h_swish(x: jax.Array) -> jax.Array:
  return x * h_sigmoid(x)


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
  """ShuffleNet's shuffle over the last axis: channel `j * (c/g) + i` moves to `i * g + j`."""
  c = x.shape[-1]
  x = x.reshape(*x.shape[:-1], groups, c // groups)
  return jnp.swapaxes(x, -1, -2).reshape(*x.shape[:-2], c)


def kernel_shape(size: int, temporal_kernel: int | None) -> tuple[int, ...]:
  """`(size, size)` for images, `(temporal_kernel, size, size)` for clips."""
  return (size, size) if temporal_kernel is None else (temporal_kernel, size, size)


def stride_shape(stride: int, temporal_kernel: int | None) -> tuple[int, ...]:
  """Spatial stride; time is never strided."""
  return (stride, stride) if temporal_kernel is None else (1, stride, stride)


def dense(features: int, axes: tuple[Any, Any], name: str, dtype: Dtype,
          param_dtype: Dtype) -> layers.Dense:
  """Linear with the official N(0, 0.01) weights and zero bias."""
  return layers.dense(features, axes, name, dtype, param_dtype, kernel_init=linear_init)


def flatten_grid(x: jax.Array) -> jax.Array:
  """`[b, *grid, c]` -> `[b, n, c]`."""
  return x.reshape(x.shape[0], -1, x.shape[-1])


class Conv(nn.Module):
  """Bias-free convolution (2D or 3D by the kernel's rank), symmetric zero padding k // 2.

  The kernel is stored in Flax's layout `[*kernel, in / groups, out]`. Pointwise
  convolutions run as a (grouped) matrix multiply; 3D depthwise ones, on CPU, as a sum
  of shifted copies (`layers.depthwise_conv3d_shifted`).

  Attributes:
    features: output channels.
    kernel_size: `(kh, kw)` or `(kt, kh, kw)`, odd.
    strides: per spatial axis; default 1.
    groups: feature groups (`in_channels` for a depthwise convolution).
  """
  features: int  # Output channels.
  kernel_size: tuple[int, ...]  # (kh, kw) or (kt, kh, kw).
  strides: tuple[int, ...] | None = None  # Default: 1 on every axis.
  groups: int = 1  # Feature groups.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    rank = len(self.kernel_size)
    in_features = x.shape[-1]
    if in_features % self.groups or self.features % self.groups:
      raise ValueError(f'{in_features} -> {self.features} channels do not split into '
                       f'{self.groups} groups.')
    kernel = self.param(
        'kernel',
        nn.with_logical_partitioning(conv_init, (*_KERNEL_AXES[rank], 'conv_in', 'embed')),
        (*self.kernel_size, in_features // self.groups, self.features), self.param_dtype)
    kernel = kernel.astype(self.dtype)
    x = x.astype(self.dtype)
    strides = tuple(self.strides or (1,) * rank)
    if all(k == 1 for k in self.kernel_size) and all(s == 1 for s in strides):
      if self.groups == 1:
        y = jax.lax.dot_general(x, kernel.reshape(in_features, self.features),
                                (((x.ndim - 1,), (0,)), ((), ())))
        return y  # [b, *grid, out]
      g = self.groups
      grouped = x.reshape(*x.shape[:-1], g, in_features // g)  # [b, *grid, g, in/g]
      w = kernel.reshape(in_features // g, g, self.features // g)  # [in/g, g, out/g]
      y = jnp.einsum('...gi,igo->...go', grouped, w)
      return y.reshape(*x.shape[:-1], self.features)  # [b, *grid, out]
    if rank == 3 and self.groups == in_features > 1 and formulations.cpu():
      # Depthwise 3D on CPU: XLA:CPU's grouped convolution is ~100x slower than a sum of
      # shifted copies (forward and gradient), so take `layers`' strided shifted sum.
      multiplier = self.features // in_features  # output o reads input o // multiplier
      x = jnp.repeat(x, multiplier, axis=-1) if multiplier > 1 else x  # [b, t, h, w, out]
      return layers.depthwise_conv3d_shifted(x, kernel[..., 0, :], strides)
    if rank == 3 and self.groups == 1 and in_features <= 4 and formulations.cpu():
      # A stem on CPU: im2col and one matrix multiply (its kernel gradient too).
      patches = layers.conv3d_patches(x, self.kernel_size, strides)  # [b, *out, taps*in]
      w = kernel.reshape(-1, self.features)  # [taps * in, out]
      return jax.lax.dot_general(patches, w, (((patches.ndim - 1,), (0,)), ((), ())))
    spatial = 'DHW'[-rank:]
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=strides,
        padding=[(k // 2, k // 2) for k in self.kernel_size],
        dimension_numbers=(f'N{spatial}C', f'{spatial}IO', f'N{spatial}C'),
        feature_group_count=self.groups)


class ConvBN(nn.Module):
  """`Conv` then BatchNorm (PyTorch numerics), the official conv-BN pair."""
  features: int
  kernel_size: tuple[int, ...]
  strides: tuple[int, ...] | None = None
  groups: int = 1
  bn_axis_name: str | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = Conv(self.features, self.kernel_size, self.strides, self.groups, self.dtype,
             self.param_dtype, name='conv')(x)
    return layers.BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype,
                            param_dtype=self.param_dtype, name='bn')(x, train)


class DynamicReLU(nn.Module):
  """Dynamic ReLU `max(s1 * x, s2 * x)` per channel, coefficients from token 0.

  `a = h_sigmoid(fc2(relu(fc1(z0))))` in `[0, 1]^{2K}`; `s1 = 2 (a[:K] - 0.5) + 1`,
  `s2 = 2 (a[K:] - 0.5)`, shared over the whole grid. Sows `a` as `coefficients`.
  """
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, token: jax.Array) -> jax.Array:
    k, d = x.shape[-1], token.shape[-1]  # x [b, *grid, k], token [b, d]
    h = dense(d // HYPER_REDUCTION, ('embed', 'mlp'), 'fc1', self.dtype,
              self.param_dtype)(token)
    a = dense(2 * k, ('mlp', 'embed'), 'fc2', self.dtype, self.param_dtype)(jax.nn.relu(h))
    a = h_sigmoid(a)  # [b, 2k]
    self.sow('intermediates', 'coefficients', a)
    s1 = (a[:, :k] - 0.5) * 2.0 + 1.0  # [b, k]
    s2 = (a[:, k:] - 0.5) * 2.0
    if formulations.cpu():
      return dynamic_relu_dot(x, s1.astype(x.dtype), s2.astype(x.dtype))
    broadcast = (x.shape[0],) + (1,) * (x.ndim - 2) + (k,)
    return jnp.maximum(x * s1.reshape(broadcast), x * s2.reshape(broadcast))


def _per_sample_sum(x: jax.Array) -> jax.Array:
  """`[b, *grid, k] -> [b, k]` as a batched product with ones (XLA:CPU runs the column
  reduction autodiff writes several times slower)."""
  rows = x.reshape(x.shape[0], -1, x.shape[-1])  # [b, n, k]
  ones = jnp.ones((x.shape[0], 1, rows.shape[1]), x.dtype)  # [b, 1, n]
  out = jax.lax.dot_general(ones, rows, (((2,), (1,)), ((0,), (0,))),
                            precision=jax.lax.Precision.HIGHEST,
                            preferred_element_type=jnp.promote_types(x.dtype, jnp.float32))
  return out[:, 0]  # [b, k]


@jax.custom_vjp
def dynamic_relu_dot(x: jax.Array, s1: jax.Array, s2: jax.Array) -> jax.Array:
  """`max(x * s1, x * s2)`, `x [b, *grid, k]`, slopes `[b, k]` (CPU formulation): the
  slopes' gradients, sums over the grid, are products with ones."""
  shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
  return jnp.maximum(x * s1.reshape(shape), x * s2.reshape(shape))


def _dynamic_relu_fwd(x, s1, s2):
  return dynamic_relu_dot(x, s1, s2), (x, s1, s2)


def _dynamic_relu_bwd(residuals, g):
  x, s1, s2 = residuals
  shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
  s1, s2 = s1.reshape(shape), s2.reshape(shape)
  first = x * s1 >= x * s2  # the branch the maximum took
  gx = g * x
  ds1 = _per_sample_sum(jnp.where(first, gx, 0)).astype(s1.dtype)
  ds2 = _per_sample_sum(jnp.where(first, 0, gx)).astype(s2.dtype)
  return g * jnp.where(first, s1, s2), ds1, ds2


dynamic_relu_dot.defvjp(_dynamic_relu_fwd, _dynamic_relu_bwd)


class MobileToFormer(nn.Module):
  """Tokens read the feature map (official `Local2Global`, type 'attn', dynamic gate).

  `Z <- LN(Z + proj(gate(Z) * attention(q(Z), X, X)))`, softmax over all grid positions
  (`t * h * w` for clips), `gate(Z) = 2 h_sigmoid(Linear(Z))`. Sows the scaled
  attention logits `[b, heads, m, n]` and the updated tokens.
  """
  heads: int = BRIDGE_HEADS
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, z: jax.Array) -> jax.Array:
    b, m, d = z.shape
    c, h = x.shape[-1], self.heads
    keys = flatten_grid(x).reshape(b, -1, h, c // h)  # [b, n, h, c/h]
    q = dense(c, ('embed', 'mlp'), 'q', self.dtype, self.param_dtype)(z)
    q = q.reshape(b, m, h, c // h)  # [b, m, h, c/h]
    logits = jnp.einsum('bmhe,bnhe->bhmn', q, keys) * (c // h) ** -0.5  # [b, h, m, n]
    self.sow('intermediates', 'attn_logits', logits)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    out = jnp.einsum('bhmn,bnhe->bmhe', weights, keys).reshape(b, m, c)  # [b, m, c]
    gate = dense(c, ('embed', 'mlp'), 'gate', self.dtype, self.param_dtype)(z)
    out = out * (2.0 * h_sigmoid(gate))
    out = dense(d, ('mlp', 'embed'), 'proj', self.dtype, self.param_dtype)(out)
    z = layers.layer_norm('norm', self.dtype, self.param_dtype)(z + out)  # [b, m, d]
    self.sow('intermediates', 'tokens', z)
    return z


class Former(nn.Module):
  """Token self-attention with only the query projected (official `GlobalBlock`), then FFN.

  `Z <- LN(Z + proj(attention(q(Z), Z, Z)))`, `Z <- LN(Z + fc2(gelu(fc1(Z))))`.
  Attributes:
    drop_path_rate: stochastic depth on the attention branch (the official place).
  """
  heads: int = FORMER_HEADS
  drop_path_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    b, m, d = z.shape
    h = self.heads
    kv = z.reshape(b, m, h, d // h)  # [b, m, h, d/h]
    q = dense(d, ('embed', 'qkv'), 'q', self.dtype, self.param_dtype)(z)
    q = q.reshape(b, m, h, d // h)
    logits = jnp.einsum('bmhe,bkhe->bhmk', q, kv) * (d // h) ** -0.5  # [b, h, m, m]
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    out = jnp.einsum('bhmk,bkhe->bmhe', weights, kv).reshape(b, m, d)
    out = dense(d, ('qkv', 'embed'), 'proj', self.dtype, self.param_dtype)(out)
    out = layers.DropPath(self.drop_path_rate)(out, train)
    z = layers.layer_norm('norm1', self.dtype, self.param_dtype)(z + out)
    y = dense(FFN_RATIO * d, ('embed', 'mlp'), 'fc1', self.dtype, self.param_dtype)(z)
    y = dense(d, ('mlp', 'embed'), 'fc2', self.dtype, self.param_dtype)(layers.gelu(y))
    z = layers.layer_norm('norm2', self.dtype, self.param_dtype)(z + y)  # [b, m, d]
    self.sow('intermediates', 'tokens', z)
    return z


class FormerToMobile(nn.Module):
  """The feature map reads the tokens (official `Global2Local`, type 'attn').

  `Y <- Y + attention(Y, k(Z), v(Z))`, softmax over the m tokens; no output projection,
  no normalization. Sows its input map as `in`.
  """
  heads: int = BRIDGE_HEADS
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, y: jax.Array, z: jax.Array) -> jax.Array:
    self.sow('intermediates', 'in', y)
    b, m, _ = z.shape
    c, h = y.shape[-1], self.heads
    queries = flatten_grid(y).reshape(b, -1, h, c // h)  # [b, n, h, c/h]
    k = dense(c, ('embed', 'mlp'), 'k', self.dtype, self.param_dtype)(z).reshape(
        b, m, h, c // h)
    v = dense(c, ('embed', 'mlp'), 'v', self.dtype, self.param_dtype)(z).reshape(
        b, m, h, c // h)
    logits = jnp.einsum('bnhe,bmhe->bnhm', queries, k) * (c // h) ** -0.5  # [b, n, h, m]
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    out = jnp.einsum('bnhm,bmhe->bnhe', weights, v)  # [b, n, h, c/h]
    return y + out.reshape(y.shape)


class _Block(nn.Module):
  """Fields and helpers shared by the three kinds of block."""
  expansion: int  # e1: hidden width = e1 * C_in.
  out_channels: int  # C_out.
  stride: int = 1
  expansion2: int = 0  # e2 of the stride-2 block: second hidden width = e2 * C_out.
  groups: int = 1  # Pointwise groups (4 in MF-26M), with channel shuffles.
  temporal_kernel: int | None = None  # None: 2D; else the depthwise temporal extent.
  drop_path_rate: float = 0.0  # Former attention branch.
  bn_axis_name: str | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def pointwise(self, features: int, name: str) -> ConvBN:
    """1x1 (1x1x1) conv + BN with this block's pointwise groups."""
    rank = 2 if self.temporal_kernel is None else 3
    return ConvBN(features, (1,) * rank, None, self.groups, self.bn_axis_name, self.dtype,
                  self.param_dtype, name=name)

  def depthwise(self, features: int, groups: int, name: str, stride: int = 1,
                per_frame: bool = False) -> ConvBN:
    """Depthwise 3x3 conv + BN (3x3x3 in clips, 1x3x3 if `per_frame`), `groups` = C_in."""
    kt = 1 if per_frame and self.temporal_kernel is not None else self.temporal_kernel
    return ConvBN(features, kernel_shape(3, kt), stride_shape(stride, kt), groups,
                  self.bn_axis_name, self.dtype, self.param_dtype, name=name)

  def shuffle(self, x: jax.Array, groups: int) -> jax.Array:
    """The official channel shuffle, present only in grouped (g > 1) models."""
    return channel_shuffle(x, groups) if self.groups > 1 else x

  def dyrelu(self, name: str) -> DynamicReLU:
    return DynamicReLU(self.dtype, self.param_dtype, name=name)

  def bridges(self, x: jax.Array, z: jax.Array, train: bool) -> jax.Array:
    """Mobile->Former on the block input, then the Former."""
    z = MobileToFormer(dtype=self.dtype, param_dtype=self.param_dtype,
                       name='local_global')(x, z)
    return Former(drop_path_rate=self.drop_path_rate, dtype=self.dtype,
                  param_dtype=self.param_dtype, name='global_block')(z, train)

  def former_to_mobile(self, y: jax.Array, z: jax.Array) -> jax.Array:
    return FormerToMobile(dtype=self.dtype, param_dtype=self.param_dtype,
                          name='global_local')(y, z)

  def outputs(self, y: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    self.sow('intermediates', 'x', y)
    self.sow('intermediates', 'tokens', z)
    return y, z


class LiteBlock(_Block):
  """bneck-lite, the first block: depthwise 3x3 (multiplier e1), pointwise; no tokens.

  In clips its kernels are 1x3x3 (per frame). Returns `(x, z)` with `z` untouched.
  """

  @nn.compact
  def __call__(self, x: jax.Array, z: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    c_in = x.shape[-1]
    y = self.depthwise(self.expansion * c_in, c_in, 'dw', self.stride, per_frame=True)(
        x, train)
    y = self.shuffle(jax.nn.relu6(y), c_in)
    y = self.pointwise(self.out_channels, 'pw')(y, train)  # [b, *grid, c_out]
    if self.stride == 1 and c_in == self.out_channels:
      y = y + x
    return self.outputs(y, z)


class MobileFormerBlock(_Block):
  """Stride-1 Mobile-Former block (official `DnaBlock`).

  Tokens: Mobile->Former on the block input, then the Former. Mobile: pointwise e1,
  depthwise 3x3 (3x3x3 in clips), pointwise, with DyReLU after the first two; the
  identity is added before Former->Mobile.
  """

  @nn.compact
  def __call__(self, x: jax.Array, z: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    if self.stride != 1:
      raise ValueError(f'a stride-1 Mobile-Former block was given stride {self.stride}')
    c_in = x.shape[-1]
    hidden = self.expansion * c_in
    z = self.bridges(x, z, train)  # [b, m, d]
    token = z[:, 0]  # [b, d], after this block's Former
    y = self.pointwise(hidden, 'conv1')(x, train)  # [b, *grid, hidden]
    y = self.dyrelu('hyper1')(self.shuffle(y, self.groups), token)
    y = self.depthwise(hidden, hidden, 'conv2')(y, train)
    y = self.dyrelu('hyper2')(y, token)
    y = self.pointwise(self.out_channels, 'conv3')(y, train)  # [b, *grid, c_out]
    y = self.shuffle(y, self.groups)
    if c_in == self.out_channels:
      y = y + x
    return self.outputs(self.former_to_mobile(y, z), z)


class MobileFormerDownBlock(_Block):
  """Stride-2 Mobile-Former block (official `DnaBlock3`, "Mobile-Former down").

  Mobile: `u = pw(DyReLU(dw_s2(x)))`, `y = u + pw(DyReLU(dw(u)))`, the depthwise kernels
  3x3 (3x3x3 in clips, strided in space only); then Former->Mobile. No block identity.
  """

  @nn.compact
  def __call__(self, x: jax.Array, z: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    if self.stride != 2:
      raise ValueError(f'a stride-2 Mobile-Former block was given stride {self.stride}')
    c_in, c_out = x.shape[-1], self.out_channels
    z = self.bridges(x, z, train)
    token = z[:, 0]
    u = self.depthwise(self.expansion * c_in, c_in, 'conv1', stride=2)(x, train)
    u = self.dyrelu('hyper1')(self.shuffle(u, c_in), token)
    u = self.pointwise(c_out, 'conv2')(u, train)  # [b, *grid / 2, c_out]
    y = self.depthwise(self.expansion2 * c_out, c_out, 'conv3')(u, train)
    y = self.dyrelu('hyper3')(self.shuffle(y, c_out), token)
    y = self.pointwise(c_out, 'conv4')(y, train)
    return self.outputs(self.former_to_mobile(y + u, z), z)


BLOCK_KINDS = {'lite': LiteBlock, 'mf': MobileFormerBlock, 'mf_down': MobileFormerDownBlock}


class FeatureMap(nn.Module):
  """The head's ReLU6, as a module (no parameters) so that its output, the map the head
  pools, can be named: Grad-CAM weights it (the family's `cam_features`)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.relu6(x)


class Head(nn.Module):
  """The official `MergeClassifier`.

  [shuffle] pointwise C_L -> 6 C_L + BN + ReLU6; average pool + h_swish; concatenated
  with token 0; Linear -> BatchNorm1d -> h_swish; dropout; Linear to the classes.
  """
  num_classes: int
  num_features: int  # Width of the first Linear (`nf`).
  expansion: int = 6  # Head conv width = expansion * C_L.
  groups: int = 1  # Pointwise groups, with a shuffle before the conv.
  dropout_rate: float = 0.0  # Before the last Linear (official `--drop`).
  bn_axis_name: str | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, token: jax.Array, train: bool,
               features_only: bool = False) -> jax.Array:
    """`x [b, *grid, C_L]`, token 0 `[b, d]` -> logits `[b, classes]` (float32).

    With `features_only`, the map the head pools: `[b, *grid, 6 C_L]` after ReLU6.
    """
    rank = x.ndim - 2
    if self.groups > 1:
      x = channel_shuffle(x, self.groups)
    x = Conv(self.expansion * x.shape[-1], (1,) * rank, None, self.groups, self.dtype,
             self.param_dtype, name='conv')(x)
    x = layers.BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype,
                         param_dtype=self.param_dtype, name='conv_bn')(x, train)
    self.sow('intermediates', 'conv_output', x)
    x = FeatureMap(name='feature_map')(x)  # [b, *grid, 6 C_L]
    if features_only:
      return x
    pooled = jnp.mean(x.astype(jnp.float32), axis=tuple(range(1, rank + 1)))
    pooled = h_swish(pooled.astype(self.dtype))  # [b, 6 C_L]
    self.sow('intermediates', 'avgpool', pooled)
    y = jnp.concatenate([pooled, token.astype(self.dtype)], axis=-1)  # [b, 6 C_L + d]
    self.sow('intermediates', 'fc_in', y)
    y = dense(self.num_features, ('embed', 'mlp'), 'fc', self.dtype, self.param_dtype)(y)
    y = layers.BatchNorm(axis_name=self.bn_axis_name, dtype=self.dtype,
                         param_dtype=self.param_dtype, name='fc_bn')(y, train)
    y = h_swish(y)  # [b, nf]
    self.sow('intermediates', 'pre_logits', y)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    logits = dense(self.num_classes, ('mlp', 'classes'), 'classifier', self.dtype,
                   self.param_dtype)(y)
    return logits.astype(jnp.float32)  # [b, classes]
