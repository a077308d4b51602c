"""Parameters and FLOPs of a DualFormer, in the official (fvcore) convention.

One multiply-add counts as one FLOP; element-wise operations (softmax, GELU, residual
adds, BatchNorm) are not counted; LayerNorm counts 5 per element.

    python -m dualformer_jax.flops --variant tiny --clip 32,224,224
    python -m dualformer_jax.flops --all
"""

import argparse
import dataclasses

import numpy as np

from dualformer_jax import models
from dualformer_jax.models import attention
from dualformer_jax.models import dualformer

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


def count_parameters(model: dualformer.DualFormer) -> dict[str, int]:
  """Parameter counts: backbone, head and total (BatchNorm running stats excluded)."""
  from dualformer_jax import convert  # pylint: disable=g-import-not-at-top
  params = convert.variable_shapes(model)['params']
  count = lambda tree: int(sum(np.prod(leaf.shape) for leaf in _leaves(tree)))
  backbone, head = count(params['backbone']), count(params['head'])
  return {'backbone': backbone, 'head': head, 'total': backbone + head}


def _leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree_util.tree_leaves(tree)


def report(variant: str, clip: tuple[int, int, int], num_classes: int) -> str:
  model = models.create_model(variant, num_classes=num_classes)
  flops = count_flops(model, clip)
  params = count_parameters(model)
  g = lambda x: f'{x / 1e9:.2f}'
  lines = [
      f'DualFormer-{variant}, clip {clip[0]}x{clip[1]}x{clip[2]}, {num_classes} classes',
      f'  parameters: backbone {params["backbone"]:,}, head {params["head"]:,}, '
      f'total {params["total"]:,}',
      f'  GFLOPs per view: {g(flops.total)} (linear {g(flops.linear)}, attention '
      f'{g(flops.attention)}, conv {g(flops.conv)}, LayerNorm {g(flops.layer_norm)})',
  ]
  if variant in models.OFFICIAL_GFLOPS and tuple(clip) == (32, 224, 224):
    official = models.OFFICIAL_GFLOPS[variant]
    lines.append(f'  official: {official} GFLOPs, {models.OFFICIAL_BACKBONE_PARAMS[variant]:,} '
                 f'backbone parameters (ratio {flops.total / 1e9 / official:.4f})')
  return '\n'.join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m dualformer_jax.flops', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--variant', default='tiny', choices=sorted(models.VARIANTS))
  parser.add_argument('--clip', default=None,
                      help='T,H,W of one view (default: the variant\'s video_size)')
  parser.add_argument('--num_classes', type=int, default=400)
  parser.add_argument('--all', action='store_true', help='tiny, small and base at 32x224x224')
  args = parser.parse_args(argv)
  variants = ['tiny', 'small', 'base'] if args.all else [args.variant]
  for variant in variants:
    if args.clip:
      clip = tuple(int(v) for v in args.clip.split(','))
    else:
      clip = tuple(models.VARIANTS[variant]['video_size'])
    print(report(variant, clip, args.num_classes))


if __name__ == '__main__':
  main()
