"""FLOPs of a DualFormer, in the official (fvcore) convention.

One multiply-add counts as one FLOP; element-wise operations (softmax, GELU, residual
adds, BatchNorm) are not counted; LayerNorm counts 5 per element. The report and its
command line are shared by every family: `python -m dualformer_jax.flops`.
"""

import dataclasses

import numpy as np

from dualformer_jax.models.dualformer import attention
from dualformer_jax.models.dualformer import model as dualformer

LAYER_NORM_FLOPS_PER_ELEMENT = 5


@dataclasses.dataclass
class FlopCount:
  """Multiply-adds per view, by kind of operation."""
  linear: int = 0
  attention: int = 0  # q @ k and weights @ v
  conv: int = 0
  layer_norm: int = 0

  @property
  def total(self) -> int:
    return self.linear + self.attention + self.conv + self.layer_norm


def flops_by_kind(model: dualformer.DualFormer, clip: tuple[int, int, int]) -> dict[str, int]:
  """`count_flops` as `{kind: multiply-adds}` (the family interface)."""
  return dataclasses.asdict(count_flops(model, clip))


def count_flops(model: dualformer.DualFormer, clip: tuple[int, int, int]) -> FlopCount:
  """FLOPs of one forward pass over one clip `(T, H, W)` (batch 1)."""
  flops = FlopCount()
  grids = [tuple(c // p for c, p in zip(clip, model.patch_size))]
  for tp in model.temporal_pooling[1:]:
    grids.append((grids[-1][0] // tp, grids[-1][1] // 2, grids[-1][2] // 2))
  resolutions = dualformer.stage_resolutions(model.video_size, model.patch_size,
                                             model.temporal_pooling)
  in_channels = 3
  for i, (grid, depth) in enumerate(zip(grids, model.depths)):
    c = model.embed_dims[i]
    n = int(np.prod(grid))
    hidden = int(c * model.mlp_ratios[i])
    merge = model.patch_size if i == 0 else (model.temporal_pooling[i], 2, 2)
    flops.conv += n * c * in_channels * int(np.prod(merge))  # patch embedding
    flops.layer_norm += LAYER_NORM_FLOPS_PER_ELEMENT * n * c  # its LayerNorm
    flops.conv += n * c * 27  # positional encoding generator (3x3x3 depthwise)
    fine, coarse = dualformer.pyramid_kernels(resolutions[i], model.fine_pysizes[i],
                                              model.coarse_pysizes[i],
                                              i in dualformer.COARSE_STAGES)
    for j in range(depth):
      flops.layer_norm += 2 * LAYER_NORM_FLOPS_PER_ELEMENT * n * c  # norm1, norm2
      flops.linear += 2 * n * c * hidden  # MLP
      if j % 2 == 0:  # LW-MSA
        window = int(np.prod(model.local_sizes[i]))
        flops.linear += 4 * n * c * c  # qkv, proj
        flops.attention += 2 * n * window * c
      else:  # GP-MSA
        if int(np.prod(fine)) > 1:
          fine_grid = [g // k for g, k in zip(grid, fine)]
          keys = int(np.prod(fine_grid))
          flops.conv += keys * c * int(np.prod(fine))
          if coarse is not None:
            patch_grid = [g // k for g, k in zip(grid, attention.COARSE_FIRST_KERNEL)]
            patches = int(np.prod(patch_grid))
            flops.conv += patches * c * int(np.prod(attention.COARSE_FIRST_KERNEL))
            coarse_tokens = int(np.prod([g // k for g, k in zip(patch_grid, coarse)]))
            flops.conv += coarse_tokens * c * int(np.prod(coarse))
            keys += coarse_tokens
          flops.layer_norm += LAYER_NORM_FLOPS_PER_ELEMENT * keys * c
        else:
          keys = n
        flops.linear += 2 * n * c * c + 2 * keys * c * c  # q, proj; kv
        flops.attention += 2 * n * keys * c
    in_channels = c
  flops.layer_norm += LAYER_NORM_FLOPS_PER_ELEMENT * int(np.prod(grids[-1])) * in_channels
  flops.linear += in_channels * model.num_classes  # classifier
  return flops
