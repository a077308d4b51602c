"""The DualFormer backbone and classifier.

Input clips are channels-last `[batch, time, height, width, 3]`, normalized with the
ImageNet mean and std on a 0-255 scale. The model is built for one `video_size`; the
pooling kernels of the global pyramid are derived from it (as in the official model).
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models.dualformer import attention
from dualformer_jax.models import layers

Dtype = Any
Shape3 = tuple[int, int, int]

GRID_AXES = ('act_batch', 'act_time', 'act_height', 'act_width', 'act_embed')
COARSE_STAGES = (0, 1)  # Stages whose GP-MSA has the coarse pyramid level.


def stage_resolutions(video_size: Shape3, patch_size: Shape3,
                      temporal_pooling: Sequence[int]) -> list[Shape3]:
  """Token grid `(d, h, w)` of each stage for a clip of `video_size`."""
  d, h, w = (v // p for v, p in zip(video_size, patch_size))
  grids = [(d, h, w)]
  for tp in temporal_pooling[1:]:
    d, h, w = d // tp, h // 2, w // 2
    grids.append((d, h, w))
  return grids


def pyramid_kernels(resolution: Shape3, fine_pysize: Shape3, coarse_pysize: Shape3,
                    with_coarse: bool) -> tuple[Shape3, Shape3 | None]:
  """Fine pooling kernel and the coarse level's second kernel for one stage."""
  fine = tuple(r // p for r, p in zip(resolution, fine_pysize))
  if min(fine) < 1:
    raise ValueError(f'fine_pysize {fine_pysize} is larger than the stage grid {resolution}')
  if not with_coarse:
    return fine, None
  coarse_total = tuple(r // p for r, p in zip(resolution, coarse_pysize))
  coarse = tuple(k // f for k, f in zip(coarse_total, attention.COARSE_FIRST_KERNEL))
  if min(coarse) < 1:
    raise ValueError(f'coarse_pysize {coarse_pysize} does not fit the stage grid {resolution}')
  return fine, coarse


class Block(nn.Module):
  """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)).

  Attributes:
    make_attention: builds the token mixer (LW-MSA or GP-MSA) given its `name`.
  """
  make_attention: Callable[..., nn.Module]  # Token mixer factory, [b, d, h, w, c] -> same.
  mlp_ratio: float = 4.0
  drop_rate: float = 0.0  # Dropout inside the MLP.
  drop_path_rate: float = 0.0  # Stochastic depth of both residual branches.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    channels = x.shape[-1]
    drop_path = layers.DropPath(self.drop_path_rate)
    y = layers.layer_norm('norm1', self.dtype, self.param_dtype)(x)
    x = x + drop_path(self.make_attention(name='attn')(y, train), train)
    y = layers.layer_norm('norm2', self.dtype, self.param_dtype)(x)
    y = layers.Mlp(int(channels * self.mlp_ratio), self.drop_rate, self.dtype,
                   self.param_dtype, name='mlp')(y, train)
    x = x + drop_path(y, train)
    return nn.with_logical_constraint(x, GRID_AXES)


class PatchEmbed(nn.Module):
  """Non-overlapping Conv3d (kernel = stride) then LayerNorm."""
  features: int  # Output channels.
  patch_size: Shape3  # Kernel = stride.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = layers.PatchConv3D(self.features, self.patch_size, self.dtype, self.param_dtype,
                           name='proj')(x)  # [b, d, h, w, c]
    x = layers.layer_norm('norm', self.dtype, self.param_dtype)(x)
    return nn.with_logical_constraint(x, GRID_AXES)


class DualFormerBackbone(nn.Module):
  """Four stages of patch merging and alternating LW-MSA / GP-MSA blocks.

  Attributes mirror the official backbone's keyword arguments; see `DualFormer`.
  """
  video_size: Shape3 = (32, 224, 224)
  patch_size: Shape3 = (2, 4, 4)
  embed_dims: Sequence[int] = (64, 128, 256, 512)
  num_heads: Sequence[int] = (2, 4, 8, 16)
  depths: Sequence[int] = (2, 2, 10, 4)
  mlp_ratios: Sequence[float] = (4, 4, 4, 4)
  qkv_bias: bool = True
  temporal_pooling: Sequence[int] = (2, 1, 1, 1)
  local_sizes: Sequence[Shape3] = ((8, 7, 7),) * 4
  fine_pysizes: Sequence[Shape3] = ((8, 7, 7), (8, 7, 7), (8, 7, 7), (16, 7, 7))
  coarse_pysizes: Sequence[Shape3] = ((4, 4, 4),) * 4
  coarse_stages: Sequence[int] = COARSE_STAGES  # Stages with the coarse pyramid level.
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.0
  remat: bool = False  # Recompute each block's activations in the backward pass.
  bn_axis_name: str | None = None  # pmap axis name for global BatchNorm statistics.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def required_multiple(self) -> Shape3:
    """Clip `(T, H, W)` must be a multiple of this for every stage's windows to fit."""
    multiple = np.array(self.patch_size)
    stride = np.array(self.patch_size)
    for i, window in enumerate(self.local_sizes):
      if i > 0:
        stride = stride * np.array((self.temporal_pooling[i], 2, 2))
      multiple = np.lcm(multiple, stride * np.array(window))
    return tuple(int(m) for m in multiple)

  def check_clip_shape(self, shape: Sequence[int]) -> None:
    multiple = self.required_multiple()
    expected = f'[batch, T, H, W, 3] with (T, H, W) multiples of {multiple}'
    if len(shape) != 5 or shape[-1] != 3:
      raise ValueError(f'DualFormer expects channels-last RGB clips {expected} '
                       f'(built for video_size {tuple(self.video_size)}); got {tuple(shape)}.')
    if any(s % m for s, m in zip(shape[1:4], multiple)):
      raise ValueError(f'Clip shape {tuple(shape)} does not fit the local windows '
                       f'{tuple(map(tuple, self.local_sizes))}: expected {expected}, '
                       f'e.g. video_size {tuple(self.video_size)}.')

  @nn.compact
  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    self.check_clip_shape(clips.shape)
    x = clips.astype(self.dtype)  # [b, t, h, w, 3]
    resolutions = stage_resolutions(self.video_size, self.patch_size, self.temporal_pooling)
    drop_path_rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths))
    block_cls = nn.remat(Block, static_argnums=(2,)) if self.remat else Block
    block_index = 0
    for i, depth in enumerate(self.depths):
      merge = tuple(self.patch_size) if i == 0 else (self.temporal_pooling[i], 2, 2)
      x = PatchEmbed(self.embed_dims[i], merge, self.dtype, self.param_dtype,
                     name=f'patch_embed_{i}')(x)  # [b, d, h, w, c_i]
      x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
      fine, coarse = pyramid_kernels(resolutions[i], self.fine_pysizes[i],
                                     self.coarse_pysizes[i], i in self.coarse_stages)
      for j in range(depth):
        if j % 2 == 0:
          mixer = functools.partial(
              attention.LocalWindowAttention, self.num_heads[i], tuple(self.local_sizes[i]),
              self.qkv_bias, self.attn_drop_rate, self.drop_rate, self.dtype,
              self.param_dtype)
        else:
          mixer = functools.partial(
              attention.GlobalPyramidAttention, self.num_heads[i], fine, coarse,
              self.qkv_bias, self.attn_drop_rate, self.drop_rate, self.bn_axis_name,
              self.dtype, self.param_dtype)
        x = block_cls(mixer, self.mlp_ratios[i], self.drop_rate,
                      float(drop_path_rates[block_index]), self.dtype, self.param_dtype,
                      name=f'block_{i}_{j}')(x, train)
        block_index += 1
        if j == 0:  # Positional encoding generator, after the first block only.
          x = x + layers.DepthwiseConv3D((3, 3, 3), self.dtype, self.param_dtype,
                                         name=f'pos_block_{i}')(x)
    return layers.layer_norm('norm', self.dtype, self.param_dtype)(x)  # [b, d, h, w, c]


class ClassificationHead(nn.Module):
  """Mean over (d, h, w) -> Dropout -> Linear (mmaction2's I3D head)."""
  num_classes: int
  dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array, train: bool) -> jax.Array:
    x = jnp.mean(features.astype(jnp.float32), axis=(1, 2, 3)).astype(self.dtype)  # [b, c]
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    logits = layers.dense(self.num_classes, ('embed', 'classes'), 'fc_cls', self.dtype,
                          self.param_dtype,
                          kernel_init=nn.initializers.normal(stddev=0.01))(x)
    return logits.astype(jnp.float32)  # [b, num_classes]


class DualFormer(nn.Module):
  """DualFormer video classifier (backbone + I3D head).

  Attributes:
    num_classes: classifier outputs.
    video_size: `(T, H, W)` the model is built for; sizes the pyramid pooling kernels.
    patch_size: stage-0 patch embedding kernel = stride.
    embed_dims, num_heads, depths, mlp_ratios: per stage.
    qkv_bias: biases in the q/kv/qkv projections.
    temporal_pooling: time stride of each stage's patch merging (entry 0 unused; the
      patch size holds it).
    local_sizes: LW-MSA window per stage.
    fine_pysizes, coarse_pysizes: target grid of the fine and coarse pyramid levels.
    drop_rate, attn_drop_rate, drop_path_rate: dropout, attention dropout, and the
      largest stochastic-depth rate (rising linearly over blocks).
    head_dropout_rate: dropout before the classifier.
    token_head: the Token Labelling head instead of the I3D head: the same video
      classifier plus per-token logits (`token_labelling_logits`; see
      `dualformer_jax.token_labelling`); `__call__` still returns the video logits.
    token_dropout_rate: dropout of the token branch (with `token_head`).
    remat: rematerialize each block in the backward pass.
    bn_axis_name: pmap axis name so BatchNorm statistics cover the global batch.
    dtype: compute dtype (float32 or bfloat16); param_dtype: parameter dtype.
  """
  num_classes: int = 400
  video_size: Shape3 = (32, 224, 224)
  patch_size: Shape3 = (2, 4, 4)
  embed_dims: Sequence[int] = (64, 128, 256, 512)
  num_heads: Sequence[int] = (2, 4, 8, 16)
  depths: Sequence[int] = (2, 2, 10, 4)
  mlp_ratios: Sequence[float] = (4, 4, 4, 4)
  qkv_bias: bool = True
  temporal_pooling: Sequence[int] = (2, 1, 1, 1)
  local_sizes: Sequence[Shape3] = ((8, 7, 7),) * 4
  fine_pysizes: Sequence[Shape3] = ((8, 7, 7), (8, 7, 7), (8, 7, 7), (16, 7, 7))
  coarse_pysizes: Sequence[Shape3] = ((4, 4, 4),) * 4
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.1
  head_dropout_rate: float = 0.5
  token_head: bool = False
  token_dropout_rate: float = 0.5
  remat: bool = False
  bn_axis_name: str | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    self.backbone = DualFormerBackbone(
        video_size=tuple(self.video_size), patch_size=tuple(self.patch_size),
        embed_dims=tuple(self.embed_dims), num_heads=tuple(self.num_heads),
        depths=tuple(self.depths), mlp_ratios=tuple(self.mlp_ratios),
        qkv_bias=self.qkv_bias, temporal_pooling=tuple(self.temporal_pooling),
        local_sizes=tuple(map(tuple, self.local_sizes)),
        fine_pysizes=tuple(map(tuple, self.fine_pysizes)),
        coarse_pysizes=tuple(map(tuple, self.coarse_pysizes)),
        drop_rate=self.drop_rate, attn_drop_rate=self.attn_drop_rate,
        drop_path_rate=self.drop_path_rate, remat=self.remat,
        bn_axis_name=self.bn_axis_name, dtype=self.dtype, param_dtype=self.param_dtype)
    if self.token_head:
      # Imported here: the token_labelling package imports the model zoo.
      from dualformer_jax.token_labelling import head as token_head
      self.head = token_head.TokenLabellingHead(self.num_classes, self.head_dropout_rate,
                                                self.token_dropout_rate, self.dtype,
                                                self.param_dtype)
    else:
      self.head = ClassificationHead(self.num_classes, self.head_dropout_rate, self.dtype,
                                     self.param_dtype)

  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    """`[b, t, h, w, 3]` normalized clips -> `[b, num_classes]` float32 logits."""
    logits = self.head(self.backbone(clips, train), train)
    return logits[0] if self.token_head else logits

  def token_labelling_logits(self, clips: jax.Array, train: bool = False
                             ) -> tuple[jax.Array, jax.Array]:
    """With `token_head`: `(video logits [b, K], token logits [b, d, h, w, K])`."""
    if not self.token_head:
      raise ValueError('token_labelling_logits needs a DualFormer built with token_head=True.')
    return self.head(self.backbone(clips, train), train)

  def extract_features(self, clips: jax.Array, train: bool = False) -> jax.Array:
    """Backbone output `[b, d, h, w, c_last]` (after the final LayerNorm)."""
    return self.backbone(clips, train)
