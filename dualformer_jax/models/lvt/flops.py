"""FLOPs of an LVT, in the official (fvcore) convention.

One multiply-add counts as one FLOP. Counted: Linear layers, the attention matmuls
(`k'^T v` and `q' (k'^T v)`; the normalizer `q' . sum k'` is element-wise work in the
official code and not counted), the convolutions, and LayerNorm at 5 per element.
Not counted: element-wise operations (feature map, sigmoid, GELU, shifts, residual adds).
With `share_gate` the official code evaluates the one gate twice, and fvcore counts both.
"""

import dataclasses

from dualformer_jax.models.lvt import model as lvt_model

LAYER_NORM_FLOPS_PER_ELEMENT = 5
DWCONV_TAPS = 9  # 3 x 3 depthwise


@dataclasses.dataclass
class FlopCount:
  """Multiply-adds per view, by kind of operation."""
  linear: int = 0
  attention: int = 0  # the two linear-attention matmuls
  conv: int = 0  # patch embedding and the MLP's depthwise conv
  layer_norm: int = 0

  @property
  def total(self) -> int:
    return self.linear + self.attention + self.conv + self.layer_norm


def count_flops(model: lvt_model.LinearVideoTransformer,
                clip: tuple[int, int, int]) -> FlopCount:
  """FLOPs of one forward pass over one clip `(T, H, W)` (batch 1)."""
  t, h, w = clip
  grid_h = lvt_model.token_grid(h, model.patch_size, model.patch_stride, model.patch_padding)
  grid_w = lvt_model.token_grid(w, model.patch_size, model.patch_stride, model.patch_padding)
  tokens = t * grid_h * grid_w
  c, heads = model.embed_dim, model.num_heads
  e = c // heads
  hidden = int(c * model.mlp_ratio)
  ln = LAYER_NORM_FLOPS_PER_ELEMENT * c  # per token

  flops = FlopCount()
  flops.conv += tokens * c * 3 * model.patch_size ** 2  # patch embedding
  flops.layer_norm += tokens * ln  # its LayerNorm
  per_attention = 3 * c * c + c * c + 2 * (3 * e) * e * heads  # qkv, proj, two gates
  per_block = 2 * per_attention + 2 * c * hidden  # + MLP fc1, fc2
  flops.linear += model.depth * tokens * per_block
  flops.attention += model.depth * tokens * 2 * (2 * heads * e * e)
  flops.conv += model.depth * tokens * DWCONV_TAPS * hidden
  flops.layer_norm += model.depth * tokens * 3 * ln + tokens * ln  # blocks, final norm
  flops.layer_norm += ln  # VVTHead's LayerNorm on the pooled feature
  flops.linear += c * model.head_mlp_dim + model.head_mlp_dim * model.num_classes
  return flops


def flops_by_kind(model: lvt_model.LinearVideoTransformer,
                  clip: tuple[int, int, int]) -> dict[str, int]:
  """`count_flops` as `{kind: multiply-adds}` (the family interface)."""
  return dataclasses.asdict(count_flops(model, clip))
