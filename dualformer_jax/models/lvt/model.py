"""The Linear Video Transformer (LVT) backbone, its `VVTHead` and the classifier.

Input clips are channels-last `[b, t, h, w, 3]`, normalized to [-1, 1] (mean = std = 0.5
on a 0-1 scale). Every frame is embedded by an overlapping Conv2d (kernel 16, stride 14,
padding 8) into a `G x G` token grid, `G = (H + 16 - 16) // 14 + 1`; the blocks keep the
grid `[b, t, G, G, c]` and alternate linear attention over time (with the spatial shift)
and over space (with the temporal shift), then a depthwise-conv MLP. The model is built
for one `video_size`, as the official one (its reshapes use the frame count and its
spatial shift the token count of the configuration).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models import layers
from dualformer_jax.models.lvt import attention
from dualformer_jax.models.lvt import initializers as inits
from dualformer_jax.models.lvt import shifts

Dtype = Any
Shape3 = tuple[int, int, int]

GRID_AXES = ('act_batch', 'act_time', 'act_height', 'act_width', 'act_embed')
PATCH_NORM_EPS = 1e-5  # patch-embedding LayerNorm (PyTorch default)
BLOCK_NORM_EPS = 1e-6  # the blocks' LayerNorms and the final one
HEAD_NORM_EPS = 1e-5  # VVTHead's LayerNorm


def token_grid(size: int, kernel: int, stride: int, padding: int) -> int:
  """Tokens per side of the patch-embedding conv output."""
  return (size + 2 * padding - kernel) // stride + 1


class PatchEmbed(nn.Module):
  """Per-frame Conv2d (overlapping patches) then LayerNorm (eps 1e-5)."""
  features: int  # Output channels c.
  patch_size: int  # Conv kernel.
  stride: int  # Conv stride.
  padding: int  # Zero padding on each side.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self, clips: jax.Array) -> jax.Array:
    b, t, h, w, cin = clips.shape
    k = self.patch_size
    kernel = self.param(
        'kernel', nn.with_logical_partitioning(
            inits.fan_out_normal(k * k * self.features),
            ('kernel_h', 'kernel_w', 'conv_in', 'embed')),
        (k, k, cin, self.features), self.param_dtype)
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros, ('embed',)),
                      (self.features,), self.param_dtype)
    frames = clips.reshape(b * t, h, w, cin).astype(self.dtype)  # [b*t, H, W, 3]
    y = jax.lax.conv_general_dilated(
        frames, kernel.astype(self.dtype), (self.stride, self.stride),
        ((self.padding, self.padding),) * 2, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = y + bias.astype(self.dtype)  # [b*t, G, G, c]
    y = y.reshape(b, t, *y.shape[1:])  # [b, t, G, G, c]
    return inits.layer_norm(PATCH_NORM_EPS, 'norm', self.dtype, self.param_dtype)(y)


class DWConv(nn.Module):
  """Depthwise 3x3 Conv2d, stride 1, zero padding 1, on each frame's token grid."""
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    kernel = self.param(
        'kernel', nn.with_logical_partitioning(inits.fan_out_normal(9),
                                               ('kernel_h', 'kernel_w', 'mlp')),
        (3, 3, channels), self.param_dtype)
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros, ('mlp',)),
                      (channels,), self.param_dtype)
    # A (1, 3, 3) depthwise Conv3d over [b, t, G, G, c]: no mixing across frames.
    y = layers.depthwise_conv3d(x.astype(self.dtype), kernel.astype(self.dtype)[None])
    return y + bias.astype(self.dtype)


class Mlp(nn.Module):
  """PVTv2-style MLP: fc1 -> DWConv -> GELU -> Dropout -> fc2 -> Dropout."""
  hidden_features: int  # Hidden width (mlp_ratio * c).
  drop_rate: float = 0.0  # Dropout after the GELU and after fc2.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.
  linear_init_std: float = inits.LINEAR_STD  # Linear kernels' init std (official 0.02).

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = x.shape[-1]
    y = inits.dense(self.hidden_features, ('embed', 'mlp'), 'fc1', self.dtype,
                    self.param_dtype, std=self.linear_init_std)(x)  # [b, t, G, G, 4c]
    y = DWConv(self.dtype, self.param_dtype, name='dwconv')(y)
    y = layers.gelu(y)
    y = nn.Dropout(self.drop_rate)(y, deterministic=not train)
    y = inits.dense(c, ('mlp', 'embed'), 'fc2', self.dtype, self.param_dtype,
                    std=self.linear_init_std)(y)  # [.., c]
    return nn.Dropout(self.drop_rate)(y, deterministic=not train)


class Block(nn.Module):
  """Divided space-time block: temporal attention, spatial attention, MLP (pre-norm).

  Attributes:
    temporal_shift, spatial_shift: the k/v shifts of the spatial and the temporal
      attention (`[b, t, h, w, c]` -> same).
  """
  num_heads: int  # Attention heads.
  temporal_shift: Any  # Callable shift for the spatial attention's k and v.
  spatial_shift: Any  # Callable shift for the temporal attention's k and v.
  share_gate: bool = False  # One feature-fixation gate for q' and k'.
  mlp_ratio: float = 4.0  # MLP hidden width / c.
  qkv_bias: bool = True  # Bias in the qkv projections.
  drop_rate: float = 0.0  # Dropout after projections and in the MLP.
  attn_drop_rate: float = 0.0  # Dropout on the gated q', k'.
  drop_path_rate: float = 0.0  # Stochastic depth of each of the three branches.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.
  linear_init_std: float = inits.LINEAR_STD  # Linear kernels' init std (official 0.02).

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = x.shape[-1]
    drop_path = layers.DropPath(self.drop_path_rate)
    norm = lambda name: inits.layer_norm(BLOCK_NORM_EPS, name, self.dtype, self.param_dtype)
    attn = functools.partial(
        attention.LinearAttention, self.num_heads, share_gate=self.share_gate,
        qkv_bias=self.qkv_bias, attn_drop_rate=self.attn_drop_rate,
        proj_drop_rate=self.drop_rate, linear_init_std=self.linear_init_std,
        dtype=self.dtype, param_dtype=self.param_dtype)

    y = attn('time', self.spatial_shift, name='temporal_attn')(norm('temporal_norm1')(x), train)
    self.sow('intermediates', 'temporal_attn_branch', y)
    x = x + drop_path(y, train)  # [b, t, G, G, c]
    y = attn('space', self.temporal_shift, name='attn')(norm('norm1')(x), train)
    self.sow('intermediates', 'spatial_attn_branch', y)
    x = x + drop_path(y, train)
    y = Mlp(int(c * self.mlp_ratio), self.drop_rate, self.dtype, self.param_dtype,
            self.linear_init_std, name='mlp')(norm('norm2')(x), train)
    self.sow('intermediates', 'mlp_branch', y)
    x = x + drop_path(y, train)
    self.sow('intermediates', 'out', x)
    return nn.with_logical_constraint(x, GRID_AXES)


class LVTBackbone(nn.Module):
  """Patch embedding, temporal embedding, blocks, final LayerNorm: `[b, t, G, G, c]`.

  Attributes mirror `LinearVideoTransformer`'s.
  """
  video_size: Shape3 = (16, 224, 224)  # (T, H, W) of the clips.
  patch_size: int = 16  # Patch-embedding kernel.
  patch_stride: int = 14  # Patch-embedding stride.
  patch_padding: int = 8  # Patch-embedding zero padding.
  embed_dim: int = 512  # Width c.
  depth: int = 12  # Blocks.
  num_heads: int = 8  # Attention heads.
  mlp_ratio: float = 4.0  # MLP hidden width / c.
  qkv_bias: bool = True  # Bias in the qkv projections.
  temp_embed_frames: int = 8  # Frames of the temporal embedding.
  share_gate: bool = False  # pgate (True) or q_gate + k_gate (False).
  shift_div: int = 8  # Temporal shift: c // shift_div channels each way.
  num_segments: int = 8  # Temporal shift group length (frames).
  shift_size: int = 1  # Spatial shift distance (tokens).
  drop_rate: float = 0.0  # Dropout after the patch embedding, projections, in the MLP.
  attn_drop_rate: float = 0.0  # Dropout on the gated q', k'.
  drop_path_rate: float = 0.0  # Largest stochastic-depth rate (linear over blocks).
  remat: bool = False  # Recompute each block in the backward pass.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.
  linear_init_std: float = inits.LINEAR_STD  # Linear kernels' init std (official 0.02).

  @nn.compact
  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    x = PatchEmbed(self.embed_dim, self.patch_size, self.patch_stride, self.patch_padding,
                   self.dtype, self.param_dtype, name='patch_embed')(clips)  # [b, t, G, G, c]
    self.sow('intermediates', 'patch_embed_out', x)
    x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
    # Official quirk: an embedding of `temp_embed_frames` (8) frames, tiled over the clip.
    temp_embed = self.param(
        'temp_embed', nn.with_logical_partitioning(nn.initializers.zeros, (None, 'embed')),
        (self.temp_embed_frames, self.embed_dim), self.param_dtype)
    t = x.shape[1]
    frame_embed = temp_embed.astype(self.dtype)[np.arange(t) % self.temp_embed_frames]
    x = x + frame_embed[None, :, None, None, :]  # [b, t, G, G, c]
    x = nn.with_logical_constraint(x, GRID_AXES)
    self.sow('intermediates', 'block_in', x)

    temporal_shift = functools.partial(shifts.temporal_shift, shift_div=self.shift_div,
                                       num_segments=self.num_segments)
    spatial_shift = functools.partial(shifts.spatial_shift, shift_size=self.shift_size)
    block_cls = nn.remat(Block, static_argnums=(2,)) if self.remat else Block
    rates = np.linspace(0.0, self.drop_path_rate, self.depth)
    for i in range(self.depth):
      x = block_cls(self.num_heads, temporal_shift, spatial_shift, self.share_gate,
                    self.mlp_ratio, self.qkv_bias, self.drop_rate, self.attn_drop_rate,
                    float(rates[i]), self.dtype, self.param_dtype, self.linear_init_std,
                    name=f'block_{i}')(x, train)
    return inits.layer_norm(BLOCK_NORM_EPS, 'norm', self.dtype, self.param_dtype)(x)


class VVTHead(nn.Module):
  """Mean over frames -> LayerNorm (eps 1e-5) -> Linear -> GELU -> Dropout -> Linear.

  Also holds the official `new_fc` (`UnusedLinear`): like the classifier it depends on
  the class count and is new when fine-tuning, so it lives with the head.
  """
  num_classes: int  # Logits.
  mlp_dim: int = 768  # Hidden width (TEMPORAL_HEAD.MLP_DIM).
  dropout_rate: float = 0.5  # Dropout before the last Linear.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.
  linear_init_std: float = inits.LINEAR_STD  # Linear kernels' init std (official 0.02).

  @nn.compact
  def __call__(self, frames: jax.Array, train: bool) -> jax.Array:
    UnusedLinear(frames.shape[-1], self.num_classes, self.param_dtype, name='new_fc')()
    x = jnp.mean(frames.astype(jnp.float32), axis=1).astype(self.dtype)  # [b, c]
    self.sow('intermediates', 'pooled', x)
    x = inits.layer_norm(HEAD_NORM_EPS, 'norm', self.dtype, self.param_dtype)(x)
    x = inits.dense(self.mlp_dim, ('embed', 'mlp'), 'fc1', self.dtype, self.param_dtype,
                    std=self.linear_init_std)(x)
    x = layers.gelu(x)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    x = inits.dense(self.num_classes, ('mlp', 'classes'), 'fc2', self.dtype,
                    self.param_dtype, std=self.linear_init_std)(x)
    return x.astype(jnp.float32)  # [b, num_classes]


class UnusedLinear(nn.Module):
  """The official `new_fc`: a Linear(c, classes) that is built and trained but never
  called. Kept as parameters so checkpoints round-trip exactly; calling this module
  only creates them."""
  in_features: int  # c.
  features: int  # Classes.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self) -> None:
    self.param('kernel', nn.with_logical_partitioning(
        nn.initializers.normal(stddev=inits.NEW_FC_STD), ('embed', 'classes')),
               (self.in_features, self.features), self.param_dtype)
    self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros, ('classes',)),
               (self.features,), self.param_dtype)


class LinearVideoTransformer(nn.Module):
  """LVT video classifier: backbone, token dropout + token mean per frame, `VVTHead`.

  Attributes:
    num_classes: classifier outputs.
    video_size: `(T, H, W)` the model is built for (clips must have it).
    patch_size, patch_stride, patch_padding: the per-frame patch-embedding Conv2d.
    embed_dim, depth, num_heads, mlp_ratio, qkv_bias: the transformer.
    temp_embed_frames: frames of the temporal embedding (8; frame t gets t mod 8).
    share_gate: one feature-fixation gate (`pgate`) for q' and k' (K600, SSv2).
    shift_div, num_segments: temporal shift of `c // shift_div` channels each way,
      within groups of `num_segments` frames.
    shift_size: spatial shift distance in tokens.
    head_mlp_dim: hidden width of `VVTHead`.
    drop_rate, attn_drop_rate, drop_path_rate: backbone dropout (patch embedding,
      projections, MLP), dropout on the gated q', k', and the largest stochastic-depth
      rate (rising linearly over blocks); all 0 officially.
    head_dropout_rate: `MODEL.DROPOUT_RATE` (0.5), applied twice as officially: to every
      token before the token mean, and inside `VVTHead`.
    remat: rematerialize each block in the backward pass.
    dtype: compute dtype; param_dtype: parameter dtype.
    linear_init_std: std of every Linear kernel's `trunc_normal` init (official 0.02);
      affects training from scratch only.
  """
  num_classes: int = 400  # Logits.
  video_size: Shape3 = (16, 224, 224)  # (T, H, W) of the clips.
  patch_size: int = 16  # Patch-embedding kernel.
  patch_stride: int = 14  # Patch-embedding stride (overlapping patches).
  patch_padding: int = 8  # Patch-embedding zero padding.
  embed_dim: int = 512  # Width c.
  depth: int = 12  # Blocks.
  num_heads: int = 8  # Attention heads.
  mlp_ratio: float = 4.0  # MLP hidden width / c.
  qkv_bias: bool = True  # Bias in the qkv projections.
  temp_embed_frames: int = 8  # Frames of the temporal embedding.
  share_gate: bool = False  # pgate (True) or q_gate + k_gate (False).
  shift_div: int = 8  # Temporal shift: c // shift_div channels each way.
  num_segments: int = 8  # Temporal shift group length (frames).
  shift_size: int = 1  # Spatial shift distance (tokens).
  head_mlp_dim: int = 768  # VVTHead hidden width.
  drop_rate: float = 0.0  # Backbone dropout.
  attn_drop_rate: float = 0.0  # Dropout on the gated q', k'.
  drop_path_rate: float = 0.0  # Largest stochastic-depth rate.
  head_dropout_rate: float = 0.5  # Token dropout and VVTHead dropout.
  remat: bool = False  # Recompute each block in the backward pass.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.
  linear_init_std: float = inits.LINEAR_STD  # Linear kernels' init std (official 0.02).

  def setup(self):
    self.backbone = LVTBackbone(
        video_size=tuple(self.video_size), patch_size=self.patch_size,
        patch_stride=self.patch_stride, patch_padding=self.patch_padding,
        embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads,
        mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
        temp_embed_frames=self.temp_embed_frames, share_gate=self.share_gate,
        shift_div=self.shift_div, num_segments=self.num_segments,
        shift_size=self.shift_size, drop_rate=self.drop_rate,
        attn_drop_rate=self.attn_drop_rate, drop_path_rate=self.drop_path_rate,
        remat=self.remat, dtype=self.dtype, param_dtype=self.param_dtype,
        linear_init_std=self.linear_init_std)
    self.token_dropout = nn.Dropout(self.head_dropout_rate)
    self.head = VVTHead(self.num_classes, self.head_mlp_dim, self.head_dropout_rate,
                        self.dtype, self.param_dtype, self.linear_init_std)

  def token_grid(self) -> int:
    """Tokens per side of each frame (`G`)."""
    return token_grid(self.video_size[1], self.patch_size, self.patch_stride,
                      self.patch_padding)

  def check_clip_shape(self, shape: tuple[int, ...]) -> None:
    t, h, w = self.video_size
    if len(shape) != 5 or shape[-1] != 3 or tuple(shape[1:4]) != (t, h, w):
      raise ValueError(
          f'LVT expects channels-last RGB clips [batch, {t}, {h}, {w}, 3] (its video_size; '
          f'the official model reshapes with its frame count and its spatial shift uses '
          f'the token count of the configuration); got {tuple(shape)}.')
    if h != w:
      raise ValueError(f'LVT needs square frames (a G x G token grid); video_size {(t, h, w)}')
    for name, period in (('temp_embed_frames', self.temp_embed_frames),
                         ('num_segments', self.num_segments)):
      if t % period:
        raise ValueError(f'{t} frames are not a multiple of {name}={period}.')

  def extract_features(self, clips: jax.Array, train: bool = False) -> jax.Array:
    """Final LayerNorm output before pooling, `[b, t, G, G, c]`."""
    self.check_clip_shape(clips.shape)
    return self.backbone(clips, train)

  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    """`[b, t, h, w, 3]` normalized clips -> `[b, num_classes]` float32 logits."""
    x = self.extract_features(clips, train)  # [b, t, G, G, c]
    x = self.token_dropout(x, deterministic=not train)
    frames = jnp.mean(x.astype(jnp.float32), axis=(2, 3)).astype(self.dtype)  # [b, t, c]
    self.sow('intermediates', 'frame_features', frames)
    return self.head(frames, train)
