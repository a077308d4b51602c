"""Building blocks shared by the DualFormer attentions and backbone.

Every parameter carries logical axis names (see `dualformer_jax.sharding`); compute
`dtype` is separate from `param_dtype`. Tensors are channels-last grids
`[batch, time, height, width, channels]` unless stated otherwise.
"""

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models import formulations

Dtype = Any
Shape3 = tuple[int, int, int]

LAYER_NORM_EPS = 1e-5  # The official model uses PyTorch's default everywhere.
BATCH_NORM_EPS = 1e-5
BATCH_NORM_MOMENTUM = 0.1  # PyTorch convention: new = (1 - m) * old + m * batch.

# Initializers of the official model when trained from scratch.
trunc_normal_002 = nn.initializers.truncated_normal(stddev=0.02)


def torch_conv_default_init(fan_in_axes: Sequence[int]):
  """PyTorch's default Conv3d weight init: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))."""

  def init(key, shape, dtype=jnp.float32):
    fan_in = int(np.prod([shape[a] for a in fan_in_axes]))
    bound = 1.0 / np.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_conv_bias_init(fan_in: int):
  """PyTorch's default conv bias init: U(+-1/sqrt(fan_in))."""

  def init(key, shape, dtype=jnp.float32):
    bound = 1.0 / np.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def layer_norm(name: str, dtype: Dtype, param_dtype: Dtype) -> nn.LayerNorm:
  """LayerNorm with the official epsilon and logical axes on scale and bias."""
  return nn.LayerNorm(
      epsilon=LAYER_NORM_EPS,
      dtype=dtype,
      param_dtype=param_dtype,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ('norm',)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ('norm',)),
      name=name,
  )


def dense(features: int, axes: tuple[str, str], name: str, dtype: Dtype,
          param_dtype: Dtype, use_bias: bool = True,
          kernel_init=trunc_normal_002) -> 'Dense':
  """A Linear layer: kernel `[in, out]` with logical axes `axes`, bias on `axes[1]`."""
  return Dense(
      features,
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=param_dtype,
      kernel_init=nn.with_logical_partitioning(kernel_init, axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[1],)),
      name=name,
  )


class Dense(nn.Module):
  """`flax.linen.Dense` (same parameters, names and numerics) with a hand-written VJP.

  Attributes:
    features: output width.
    use_bias: add a bias.
    kernel_init, bias_init: initializers of `kernel [in, features]` and `bias [features]`.
  """
  features: int
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: Any = trunc_normal_002
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, inputs: jax.Array, weights_only: bool = False):
    """`inputs @ kernel + bias`; with `weights_only`, `(kernel, bias)` in the compute
    dtype for inputs of `inputs.shape[-1]` features (`inputs` may be a `ShapeDtypeStruct`)."""
    kernel = self.param('kernel', self.kernel_init, (inputs.shape[-1], self.features),
                        self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), self.param_dtype)
      bias = bias.astype(self.dtype)
    if weights_only:
      return kernel.astype(self.dtype), bias
    x, kernel = inputs.astype(self.dtype), kernel.astype(self.dtype)
    if not formulations.cpu():  # GPU/TPU: autodiff (formulations.py)
      y = _contract_last(x, kernel)
      return y if bias is None else y + bias
    return linear(x, kernel, bias)


def _contract_last(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


@jax.custom_vjp
def linear(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
  """`x @ kernel + bias` over the last axis of `x`, with a hand-written backward pass.

  The kernel gradient contracts over all tokens, so one of its operands is transposed
  in memory; XLA fuses that operand's element-wise producers (GELU, LayerNorm) into the
  transposing copy, which on CPU runs far slower than the matrix multiply itself. The
  backward pass picks the narrower operand to transpose, and when that is the input
  it appends a column of ones so the same matrix multiply also yields the bias
  gradient (instead of a separate reduction over the tokens, which XLA fuses the same
  way). Same values as autodiff up to float rounding.
  """
  y = _contract_last(x, kernel)
  return y if bias is None else y + bias


def _linear_fwd(x, kernel, bias):
  return linear(x, kernel, bias), (x, kernel, bias is not None)


def _linear_bwd(residuals, g):
  x, kernel, has_bias = residuals
  dx = jax.lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())))
  tokens = tuple(range(x.ndim - 1))  # contracted in the kernel gradient
  over_tokens = ((tokens, tokens), ((), ()))
  dbias = None
  if g.shape[-1] < x.shape[-1]:  # transpose the gradient: [out, in] -> [in, out]
    dkernel = jax.lax.dot_general(g, x, over_tokens).T
    if has_bias:
      dbias = jnp.sum(g, axis=tokens, dtype=jnp.promote_types(g.dtype, jnp.float32))
      dbias = dbias.astype(g.dtype)
  elif has_bias:  # transpose the input, with a ones column for the bias gradient
    ones = jnp.ones(x.shape[:-1] + (1,), x.dtype)
    both = jax.lax.dot_general(jnp.concatenate([x, ones], axis=-1), g, over_tokens)
    dkernel, dbias = both[:-1], both[-1]
  else:
    dkernel = jax.lax.dot_general(x, g, over_tokens)
  return dx, dkernel, dbias


linear.defvjp(_linear_fwd, _linear_bwd)


def split_into_blocks(x: jax.Array, block: Shape3) -> jax.Array:
  """`[b, d, h, w, c]` -> `[b, d/kd, kd, h/kh, kh, w/kw, kw, c]` (a remainder is dropped).

  Dropping the remainder matches a PyTorch convolution whose stride equals its kernel.
  """
  b, d, h, w, c = x.shape
  kd, kh, kw = block
  nd, nh, nw = d // kd, h // kh, w // kw
  if (nd * kd, nh * kh, nw * kw) != (d, h, w):
    x = x[:, :nd * kd, :nh * kh, :nw * kw]
  return x.reshape(b, nd, kd, nh, kh, nw, kw, c)


class PatchConv3D(nn.Module):
  """A dense Conv3d whose stride equals its kernel (patch embedding / merging).

  Computed as a reshape into non-overlapping blocks plus one matrix multiply, which
  XLA compiles better than a strided convolution.

  Attributes:
    features: output channels.
    kernel_size: kernel = stride, `(kd, kh, kw)`.
  """
  features: int  # Output channels.
  kernel_size: Shape3  # Kernel and stride (kd, kh, kw).
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_features = x.shape[-1]
    kd, kh, kw = self.kernel_size
    fan_in = in_features * kd * kh * kw
    kernel = self.param(
        'kernel',
        nn.with_logical_partitioning(
            torch_conv_default_init((0, 1, 2, 3)),
            ('kernel_t', 'kernel_h', 'kernel_w', 'conv_in', 'embed')),
        (kd, kh, kw, in_features, self.features), self.param_dtype)
    bias = self.param(
        'bias', nn.with_logical_partitioning(torch_conv_bias_init(fan_in), ('embed',)),
        (self.features,), self.param_dtype)
    blocks = split_into_blocks(x.astype(self.dtype), self.kernel_size)
    # [b, d, kd, h, kh, w, kw, cin] x [kd, kh, kw, cin, cout] -> [b, d, h, w, cout]
    y = jnp.einsum('bdihjwkc,ijkco->bdhwo', blocks, kernel.astype(self.dtype))
    return y + bias.astype(self.dtype)


class DepthwisePool3D(nn.Module):
  """A depthwise Conv3d whose stride equals its kernel: a learned weighted sum per block.

  Attributes:
    kernel_size: kernel = stride, `(kd, kh, kw)`.
  """
  kernel_size: Shape3  # Kernel and stride (kd, kh, kw).
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    kd, kh, kw = self.kernel_size
    fan_in = kd * kh * kw
    kernel = self.param(
        'kernel',
        nn.with_logical_partitioning(
            torch_conv_default_init((0, 1, 2)),
            ('kernel_t', 'kernel_h', 'kernel_w', 'embed')),
        (kd, kh, kw, channels), self.param_dtype)
    bias = self.param(
        'bias', nn.with_logical_partitioning(torch_conv_bias_init(fan_in), ('embed',)),
        (channels,), self.param_dtype)
    blocks = split_into_blocks(x.astype(self.dtype), self.kernel_size)
    # [b, d, kd, h, kh, w, kw, c] * [kd, 1, kh, 1, kw, c], summed over the block axes.
    # A multiply and a reduction with channels kept minor fuse into one pass over the
    # input; as an einsum (channels a batch axis of a matrix multiply) XLA first
    # transposes the whole input.
    weights = kernel.astype(self.dtype)[:, None, :, None, :, :]
    y = jnp.sum(blocks * weights, axis=(2, 4, 6), dtype=jnp.promote_types(self.dtype,
                                                                          jnp.float32))
    return (y + bias).astype(self.dtype)


class DepthwiseConv3D(nn.Module):
  """Depthwise 3x3x3 Conv3d, stride 1, zero padding 1 (the positional encoding generator).

  Attributes:
    kernel_size: odd kernel extent per axis; padding keeps the grid size.
  """
  kernel_size: Shape3 = (3, 3, 3)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    fan_in = int(np.prod(self.kernel_size))
    kernel = self.param(
        'kernel',
        nn.with_logical_partitioning(
            torch_conv_default_init((0, 1, 2)),
            ('kernel_t', 'kernel_h', 'kernel_w', 'embed')),
        (*self.kernel_size, channels), self.param_dtype)
    bias = self.param(
        'bias', nn.with_logical_partitioning(torch_conv_bias_init(fan_in), ('embed',)),
        (channels,), self.param_dtype)
    y = depthwise_conv3d(x.astype(self.dtype), kernel.astype(self.dtype))
    return y + bias.astype(self.dtype)


def depthwise_conv3d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Depthwise 'same' convolution, stride 1: x `[b, d, h, w, c]`, kernel `[kd, kh, kw, c]`.

  On CPU a shifted sum with a written-out gradient (`depthwise_conv3d_shifted`); on
  GPU/TPU a grouped convolution (`formulations.py`).
  """
  if formulations.cpu():
    return depthwise_conv3d_shifted(x, kernel)
  return jax.lax.conv_general_dilated(
      x, kernel[:, :, :, None, :], window_strides=(1, 1, 1),
      padding=[(k // 2, k // 2) for k in kernel.shape[:3]],
      dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'), feature_group_count=x.shape[-1])


def _pad_same(x: jax.Array, kernel_size: Shape3) -> jax.Array:
  return jnp.pad(x, ((0, 0),) + tuple((k // 2, k // 2) for k in kernel_size) + ((0, 0),))


def _strided_grid(grid: Shape3, strides: Shape3) -> Shape3:
  """Output grid of a 'same'-padded odd kernel with these strides: `ceil(n / s)`."""
  return tuple((n - 1) // s + 1 for n, s in zip(grid, strides))


def _tap(padded: jax.Array, offset: Shape3, out_grid: Shape3, strides: Shape3) -> jax.Array:
  """`padded[:, i::sd, j::sh, k::sw]`, `out_grid` long: the inputs one kernel tap reads."""
  start = (0, *offset, 0)
  limit = (padded.shape[0],) + tuple(o + (n - 1) * s + 1 for o, n, s in zip(
      offset, out_grid, strides)) + (padded.shape[-1],)
  return jax.lax.slice(padded, start, limit, (1, *strides, 1))


def _shifted_sum(padded: jax.Array, kernel: jax.Array, out_grid: Shape3,
                 strides: Shape3 = (1, 1, 1)) -> jax.Array:
  """`sum_{i,j,k} padded[:, i::sd, j::sh, k::sw] * kernel[i, j, k]` (one fused loop)."""
  kd, kh, kw = kernel.shape[:3]
  y = None
  for i in range(kd):
    for j in range(kh):
      for k in range(kw):
        term = _tap(padded, (i, j, k), out_grid, strides) * kernel[i, j, k]
        y = term if y is None else y + term
  return y


def conv3d_patches(x: jax.Array, kernel_size: Shape3, strides: Shape3) -> jax.Array:
  """im2col of a 'same'-padded odd 3D kernel: `[b, d, h, w, c]` -> `[b, *out, taps * c]`,
  taps in kernel order then channels, so that a `[kd, kh, kw, c, o]` kernel reshaped to
  `[taps * c, o]` multiplies it. For convolutions of few input channels (a stem), whose
  kernel gradient XLA:CPU runs as a slow window-dilated convolution."""
  strides = tuple(strides)
  padded = _pad_same(x, kernel_size)
  out_grid = _strided_grid(x.shape[1:4], strides)
  taps = [_tap(padded, offset, out_grid, strides)
          for offset in np.ndindex(*kernel_size)]  # each [b, *out, c]
  return jnp.concatenate(taps, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv3d_shifted(x: jax.Array, kernel: jax.Array,
                             strides: Shape3 = (1, 1, 1)) -> jax.Array:
  """`depthwise_conv3d` as a sum of shifted, channel-weighted copies: XLA fuses it into one
  loop, and it shards along channels without the resharding a grouped convolution needs.
  With `strides`, only the kept outputs are computed (padding k // 2, as PyTorch's).
  The gradient is written out (custom VJP) so the training forward pass keeps only `x`,
  instead of the kd*kh*kw shifted copies that automatic differentiation of the sum would
  store.
  """
  strides = tuple(strides)
  return _shifted_sum(_pad_same(x, kernel.shape[:3]), kernel,
                      _strided_grid(x.shape[1:4], strides), strides)


def _depthwise_conv3d_fwd(x, kernel, strides):
  return depthwise_conv3d_shifted(x, kernel, strides), (x, kernel)


def _depthwise_conv3d_bwd(strides, residuals, g):
  x, kernel = residuals
  strides = tuple(strides)
  ks, grid = kernel.shape[:3], x.shape[1:4]
  out_grid = g.shape[1:4]
  # d/dx: the stride-1 sum over `g` spread back onto the input grid (zeros between
  # strided outputs), with the kernel flipped (a correlation of g).
  if strides != (1, 1, 1):
    spread = [(0, 0, 0)] + [(0, n - ((m - 1) * s + 1), s - 1)
                            for n, m, s in zip(grid, out_grid, strides)] + [(0, 0, 0)]
    g_full = jax.lax.pad(g, jnp.zeros((), g.dtype), spread)  # [b, d, h, w, c]
  else:
    g_full = g
  dx = _shifted_sum(_pad_same(g_full, ks), kernel[::-1, ::-1, ::-1], grid)
  # d/dkernel[i, j, k]: each shifted copy of x times g, summed over batch and grid. One
  # tap per loop step: written as 27 independent reductions, XLA:CPU fuses them into a
  # kernel several times slower than running them one after the other. The sum over
  # positions is a matrix-vector product with ones: XLA:CPU turns a long reduction into
  # slow reduce-window passes, a dot runs at memory speed (2.6-5x faster per tap).
  padded = _pad_same(x, ks)
  acc = jnp.promote_types(kernel.dtype, jnp.float32)
  offsets = jnp.array(np.indices(ks).reshape(3, -1).T, jnp.int32)  # [taps, 3], (i, j, k)
  window = (x.shape[0],) + tuple((m - 1) * s + 1 for m, s in zip(out_grid, strides)) + (
      x.shape[-1],)

  def tap(offset):
    zero = jnp.zeros((), offset.dtype)
    start = (zero, offset[0], offset[1], offset[2], zero)
    shifted = jax.lax.dynamic_slice(padded, start, window)
    if strides != (1, 1, 1):
      shifted = shifted[:, ::strides[0], ::strides[1], ::strides[2]]  # [b, *out_grid, c]
    return _sum_positions(shifted * g, accumulate=acc)  # [c]

  dkernel = jax.lax.map(tap, offsets).reshape(kernel.shape).astype(kernel.dtype)
  return dx.astype(x.dtype), dkernel


depthwise_conv3d_shifted.defvjp(_depthwise_conv3d_fwd, _depthwise_conv3d_bwd)


class BatchNorm(nn.Module):
  """BatchNorm over all axes but the last, with PyTorch's numerics.

  Differs from `flax.linen.BatchNorm` in what the official checkpoints need: the
  running variance is updated with the unbiased batch variance, `momentum` follows the
  PyTorch convention, and `num_batches_tracked` is kept for lossless conversion.

  Attributes:
    axis_name: if set, batch statistics are averaged over this mapped axis (pmap), so
      they are taken over the global batch.
  """
  momentum: float = BATCH_NORM_MOMENTUM  # PyTorch convention.
  epsilon: float = BATCH_NORM_EPS
  axis_name: str | None = None  # pmap axis to average batch statistics over.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    channels = x.shape[-1]
    scale = self.param(
        'scale', nn.with_logical_partitioning(nn.initializers.ones, ('norm',)),
        (channels,), self.param_dtype)
    bias = self.param(
        'bias', nn.with_logical_partitioning(nn.initializers.zeros, ('norm',)),
        (channels,), self.param_dtype)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (channels,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (channels,), jnp.float32)
    num_batches = self.variable('batch_stats', 'num_batches_tracked',
                                lambda: jnp.zeros((), jnp.int32))

    x32 = x.astype(jnp.float32)
    reduce_axes = tuple(range(x.ndim - 1))
    if train and formulations.cpu():
      y, mean, var = batch_norm_train_dot(x32, scale.astype(jnp.float32),
                                          bias.astype(jnp.float32), self.epsilon,
                                          self.axis_name)
      if not self.is_initializing():
        count = np.prod(x.shape[:-1])
        if self.axis_name is not None:
          count = count * jax.lax.psum(1, self.axis_name)
        self._update_running(ra_mean, ra_var, num_batches, mean, var, count)
      return y.astype(self.dtype)
    if train:
      count = np.prod([x.shape[a] for a in reduce_axes])
      mean = jnp.mean(x32, axis=reduce_axes)
      if self.axis_name is not None:
        mean = jax.lax.pmean(mean, self.axis_name)
      # Two passes (mean, then squared deviations): as accurate as PyTorch's kernel.
      var = jnp.mean(jnp.square(x32 - mean), axis=reduce_axes)
      if self.axis_name is not None:
        var = jax.lax.pmean(var, self.axis_name)
        count = count * jax.lax.psum(1, self.axis_name)
      if not self.is_initializing():
        self._update_running(ra_mean, ra_var, num_batches, mean, var, count)
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
    y = y * scale.astype(jnp.float32) + bias.astype(jnp.float32)
    return y.astype(self.dtype)

  def _update_running(self, ra_mean, ra_var, num_batches, mean, var, count):
    """PyTorch's running statistics: the variance enters unbiased."""
    unbiased_var = var * (count / jnp.maximum(count - 1, 1))
    m = self.momentum
    ra_mean.value = (1 - m) * ra_mean.value + m * mean
    ra_var.value = (1 - m) * ra_var.value + m * unbiased_var
    num_batches.value = num_batches.value + 1


def _sum_positions(x: jax.Array, accumulate=None) -> jax.Array:
  """`[..., c] -> [c]`: the sum over every axis but the last, as a product with ones
  (XLA:CPU runs a column reduction several times slower than a matrix-vector product),
  accumulated in `accumulate` (default: x's dtype)."""
  rows = x.reshape(-1, x.shape[-1])  # [positions, c]
  ones = jnp.ones((rows.shape[0],), rows.dtype)
  return jax.lax.dot_general(ones, rows, (((0,), (0,)), ((), ())),
                             precision=jax.lax.Precision.HIGHEST,
                             preferred_element_type=accumulate)


def _global_sum(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else jax.lax.psum(x, axis_name)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_train_dot(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                         axis_name: str | None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Train-mode BatchNorm in float32 with its sums as products with ones (CPU formulation).

  `x [..., c]` -> `(y, mean, var)`: batch statistics over every axis but the last (and
  over `axis_name`'s devices when set), the variance biased. The backward pass is written
  out so its two sums (of `g` and of `g * x_hat`) are products with ones as well.
  """
  return _batch_norm_fwd(x, scale, bias, epsilon, axis_name)[0]


def _batch_norm_fwd(x, scale, bias, epsilon, axis_name):
  count = np.prod(x.shape[:-1])
  if axis_name is not None:
    count = count * jax.lax.psum(1, axis_name)
  mean = _global_sum(_sum_positions(x), axis_name) / count  # [c]
  centred = x - mean
  # Two passes (mean, then squared deviations): as accurate as PyTorch's kernel.
  var = _global_sum(_sum_positions(jnp.square(centred)), axis_name) / count
  inv_std = jax.lax.rsqrt(var + epsilon)
  y = centred * (inv_std * scale) + bias
  return (y, mean, var), (x, mean, inv_std, scale)


def _batch_norm_bwd(epsilon, axis_name, residuals, cotangents):
  del epsilon
  x, mean, inv_std, scale = residuals
  g, g_mean, g_var = cotangents  # g [..., c]; the statistics' cotangents [c]
  count = np.prod(x.shape[:-1])
  if axis_name is not None:
    count = count * jax.lax.psum(1, axis_name)
  x_hat = (x - mean) * inv_std
  d_bias = _sum_positions(g)  # this device's share, like any parameter gradient
  d_scale = _sum_positions(g * x_hat)
  mean_g = _global_sum(d_bias, axis_name) / count
  mean_g_x_hat = _global_sum(d_scale, axis_name) / count
  dx = (scale * inv_std) * (g - mean_g - x_hat * mean_g_x_hat)
  # The statistics are outputs too (they feed the running averages).
  dx = dx + (_global_sum(g_mean, axis_name) / count
             + x_hat * (2.0 * _global_sum(g_var, axis_name) / (count * inv_std)))
  return dx, d_scale, d_bias


batch_norm_train_dot.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class DropPath(nn.Module):
  """Stochastic depth: zeroes a whole residual branch per sample with probability `rate`."""
  rate: float  # Probability of dropping the branch.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if not train or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    rng = self.make_rng('dropout')
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = jax.random.bernoulli(rng, keep_prob, mask_shape)
    return jnp.where(keep, x / keep_prob, 0).astype(x.dtype)


_SQRT_HALF = float(np.sqrt(0.5))
_INV_SQRT_2PI = float(1.0 / np.sqrt(2.0 * np.pi))


def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU, `x * (1 + erf(x / sqrt(2))) / 2` (PyTorch's formula).

  `erf` is a short polynomial in XLA, cheaper than the `erfc` of `jax.nn.gelu`. On CPU a
  custom VJP keeps the derivative from the forward pass (`gelu_keep_derivative`); on
  GPU/TPU autodiff of the same formula (`formulations.py`).
  """
  if formulations.cpu():
    return gelu_keep_derivative(x)
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # bfloat16 math in float32
  return (x32 * (0.5 + 0.5 * jax.lax.erf(x32 * _SQRT_HALF))).astype(x.dtype)


@jax.custom_vjp
def gelu_keep_derivative(x: jax.Array) -> jax.Array:
  """`gelu` whose VJP is one multiply by `Phi(x) + x * phi(x)`, kept from the forward
  pass instead of re-evaluating erf and exp."""
  return _gelu_fwd(x)[0]


def _gelu_fwd(x):
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # bfloat16 math in float32
  cdf = 0.5 + 0.5 * jax.lax.erf(x32 * _SQRT_HALF)
  derivative = cdf + x32 * jnp.exp(-0.5 * x32 * x32) * _INV_SQRT_2PI
  return (x32 * cdf).astype(x.dtype), derivative.astype(x.dtype)


def _gelu_bwd(derivative, g):
  return (g * derivative,)


gelu_keep_derivative.defvjp(_gelu_fwd, _gelu_bwd)


# CPU formulation (formulations.py): an MLP over at least this many tokens (batch included)
# runs in chunks of tokens whose hidden activations stay below MLP_CHUNK_BYTES, each chunk
# rematerialized, so the backward pass's transposed copies stay in cache (NOTES section 13).
MLP_CHUNK_MIN_TOKENS = 8192
MLP_CHUNK_BYTES = 2 * 2 ** 20


def mlp_chunk_count(shape: Sequence[int], hidden: int) -> int:
  """Chunks (of each example's tokens) for an MLP on `[b, ..., c]`; 1 off the CPU path."""
  b, tokens = shape[0], math.prod(shape[1:-1])
  if not formulations.cpu() or b * tokens < MLP_CHUNK_MIN_TOKENS:
    return 1
  return formulations.chunk_count(tokens, b * hidden * 4, MLP_CHUNK_BYTES)


class Mlp(nn.Module):
  """Linear(C, rC) -> GELU (exact, erf) -> Dropout -> Linear(rC, C) -> Dropout."""
  hidden_features: int  # Width of the hidden layer (mlp_ratio * C).
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    channels = x.shape[-1]
    fc1 = dense(self.hidden_features, ('embed', 'mlp'), 'fc1', self.dtype, self.param_dtype)
    fc2 = dense(channels, ('mlp', 'embed'), 'fc2', self.dtype, self.param_dtype)
    dropout = lambda y: nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    num_chunks = mlp_chunk_count(x.shape, self.hidden_features)
    if num_chunks == 1 or (train and self.dropout_rate > 0.0):
      return dropout(fc2(dropout(gelu(fc1(x)))))
    w1, b1 = fc1(x, weights_only=True)
    w2, b2 = fc2(jax.ShapeDtypeStruct((self.hidden_features,), self.dtype), weights_only=True)
    b, tokens = x.shape[0], math.prod(x.shape[1:-1])
    per_chunk = tokens // num_chunks
    chunks = x.astype(self.dtype).reshape(b, num_chunks, per_chunk, channels).swapaxes(0, 1)
    body = lambda t: linear(gelu_keep_derivative(linear(t, w1, b1)), w2, b2)
    y = formulations.map_chunks(body, (chunks.reshape(num_chunks * b, per_chunk, channels),),
                                num_chunks)  # [chunks * b, n / chunks, c]
    y = y.reshape(num_chunks, b, per_chunk, channels).swapaxes(0, 1)
    return y.reshape(x.shape[:-1] + (channels,))
