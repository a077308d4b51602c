"""Mobile-Former (official, image) and Mobile-Former-3D (our video reconstruction).

Both run the same blocks (`blocks.py`); the spatial rank is the only switch:

- `MobileFormer`: the official image model (Chen et al., CVPR 2022), inputs
  `[b, h, w, 3]`, 2D kernels. Parameters, forward pass, train-mode BatchNorm and the
  state-dict layout match the official code (AAboys/MobileFormer).
- `MobileFormer3D`: inputs `[b, t, h, w, 3]`. Every depthwise 3x3 in a Mobile-Former
  block becomes `temporal_kernel` x 3 x 3 (stride 1 and symmetric padding in time); the
  stem and bneck-lite stay per frame (1x3x3); pointwise convs are 1x1x1; time is never
  downsampled. One table of tokens serves the whole clip: the bridges attend over all
  t * h * w positions. Any clip size works.

Inputs are normalized with the ImageNet mean and std on a 0-255 scale.
"""

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from dualformer_jax.models.mobile_former import blocks as mf_blocks
from dualformer_jax.models.mobile_former import variants

Dtype = Any


class _MobileFormerBase(nn.Module):
  """What the image and the video model share (see their docstrings).

  Attributes:
    num_classes: classifier outputs.
    stem_channels: stem conv width.
    blocks: one `(kind, e1, c_out, stride, e2)` row per block (see `variants.py`).
    num_tokens, token_dim: the learned token table `[m, d]`.
    num_features: width of the head's first Linear.
    groups: pointwise conv groups (4 in MF-26M, with channel shuffles), also in the head.
    drop_path_rate: stochastic depth on each Former's attention branch (0 officially).
    head_dropout_rate: dropout before the classifier (the official `--drop`).
    remat: recompute each block's activations in the backward pass.
    bn_axis_name: pmap axis name so BatchNorm statistics cover the global batch.
    dtype: compute dtype; param_dtype: parameter dtype.
  """
  num_classes: int = 1000
  # Defaults: `mobile_former_294m`.
  stem_channels: int = 16
  blocks: tuple[variants.Row, ...] = variants.IMAGE_VARIANTS['mobile_former_294m']['blocks']
  num_tokens: int = 6
  token_dim: int = 192
  num_features: int = 1920
  groups: int = 1  # Pointwise groups.
  drop_path_rate: float = 0.0  # Former attention branch.
  head_dropout_rate: float = 0.0  # Before the last Linear.
  remat: bool = False  # Recompute each block in the backward pass.
  bn_axis_name: str | None = None  # pmap axis name for global BatchNorm statistics.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  input_rank: ClassVar[int] = 2  # Spatial axes of the input.

  def depthwise_temporal_kernel(self) -> int | None:
    """None for images; the temporal extent of the blocks' depthwise kernels for clips."""
    return None

  def setup(self):
    kt = self.depthwise_temporal_kernel()
    per_frame = None if kt is None else 1
    self.tokens = self.param(
        'tokens', nn.with_logical_partitioning(mf_blocks.token_init, (None, 'embed')),
        (self.num_tokens, self.token_dim), self.param_dtype)
    self.stem = mf_blocks.ConvBN(
        self.stem_channels, mf_blocks.kernel_shape(3, per_frame),
        mf_blocks.stride_shape(2, per_frame), bn_axis_name=self.bn_axis_name,
        dtype=self.dtype, param_dtype=self.param_dtype)
    features = []
    for kind, e1, c_out, stride, e2 in self.blocks:
      if kind not in mf_blocks.BLOCK_KINDS:
        raise ValueError(f'unknown block kind {kind!r}; use one of '
                         f'{sorted(mf_blocks.BLOCK_KINDS)}')
      block_cls = mf_blocks.BLOCK_KINDS[kind]
      if self.remat:
        block_cls = nn.remat(block_cls, static_argnums=(3,))
      features.append(block_cls(
          int(e1), int(c_out), int(stride), int(e2), self.groups, kt,
          self.drop_path_rate, self.bn_axis_name, self.dtype, self.param_dtype))
    self.features = features
    self.local_global = mf_blocks.MobileToFormer(dtype=self.dtype,
                                                 param_dtype=self.param_dtype)
    self.head = mf_blocks.Head(self.num_classes, self.num_features, groups=self.groups,
                               dropout_rate=self.head_dropout_rate,
                               bn_axis_name=self.bn_axis_name, dtype=self.dtype,
                               param_dtype=self.param_dtype)

  def check_input_shape(self, shape: tuple[int, ...]) -> None:
    layout = '[batch, H, W, 3]' if self.input_rank == 2 else '[batch, T, H, W, 3]'
    if len(shape) != self.input_rank + 2 or shape[-1] != 3:
      raise ValueError(f'{type(self).__name__} expects channels-last RGB inputs {layout}; '
                       f'got {tuple(shape)}.')

  def trunk(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Inputs -> (last block's map `[b, *grid, C_L]`, tokens after the final bridge)."""
    self.check_input_shape(x.shape)
    grid_axes = ('act_batch',) + ('act_time',) * (self.input_rank - 2) + (
        'act_height', 'act_width', 'act_embed')
    x = nn.with_logical_constraint(x.astype(self.dtype), grid_axes)  # [b, *grid, 3]
    x = jax.nn.relu6(self.stem(x, train))  # [b, *grid / 2, stem]
    self.sow('intermediates', 'stem_output', x)
    b = x.shape[0]
    z = jnp.broadcast_to(self.tokens.astype(self.dtype)[None], (b, *self.tokens.shape))
    for block in self.features:
      x, z = block(x, z, train)  # [b, *grid_i, c_i], [b, m, d]
      x = nn.with_logical_constraint(x, grid_axes)
    z = self.local_global(x, z)  # the final Mobile->Former
    return x, z

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Normalized inputs -> `[b, num_classes]` float32 logits."""
    x, z = self.trunk(x, train)
    return self.head(x, z[:, 0], train)

  def extract_features(self, x: jax.Array, train: bool = False) -> jax.Array:
    """The last CNN feature map, the one the head pools: `[b, *grid, 6 C_L]` (ReLU6'd).

    (The head then pools it, applies h_swish and concatenates token 0.)
    """
    x, z = self.trunk(x, train)
    return self.head(x, z[:, 0], train, features_only=True)


class MobileFormer(_MobileFormerBase):
  """The official image Mobile-Former, channels-last `[b, h, w, 3]` inputs.

  Attributes (besides the shared ones, see `_MobileFormerBase`):
    image_size: `(H, W)` the model is built for (any size works; 224 officially).
  """
  image_size: tuple[int, int] = (224, 224)

  input_rank: ClassVar[int] = 2


class MobileFormer3D(_MobileFormerBase):
  """Mobile-Former-3D, our reconstruction of Video Mobile-Former, `[b, t, h, w, 3]` clips.

  Not the published Video Mobile-Former (whose architecture we could not read): the
  image model inflated to 3D under the constraints of that paper's abstract (a light
  3D CNN beside a Transformer over very few tokens for the whole clip, cross-attention
  both ways).

  Attributes (besides the shared ones, see `_MobileFormerBase`):
    video_size: the default clip `(T, H, W)`; any clip size works.
    temporal_kernel: temporal extent of the depthwise kernels in Mobile-Former blocks
      (3; 1 for the tokens-only ablation).
  """
  num_classes: int = 400
  # Defaults: `mobile_former_3d_s` (MF-214M widths), the proposal's 1G point.
  stem_channels: int = variants.VIDEO_VARIANTS['mobile_former_3d_s']['stem_channels']
  blocks: tuple[variants.Row, ...] = variants.VIDEO_VARIANTS['mobile_former_3d_s']['blocks']
  num_features: int = variants.VIDEO_VARIANTS['mobile_former_3d_s']['num_features']
  video_size: tuple[int, int, int] = (8, 160, 160)
  temporal_kernel: int = 3

  input_rank: ClassVar[int] = 3

  def depthwise_temporal_kernel(self) -> int | None:
    if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
      raise ValueError(f'temporal_kernel must be odd and positive, got {self.temporal_kernel}')
    return int(self.temporal_kernel)
