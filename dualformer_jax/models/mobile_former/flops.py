"""Multiply-adds of a Mobile-Former, in the fvcore convention of the official figures.

One multiply-add counts as one FLOP. Counted: convolutions, Linear layers and the
attention matmuls (not biases, activations, softmax, DyReLU's max or residual adds);
BatchNorm two per element (fvcore's eval-mode count, normalize and affine, which the
official totals bear out); LayerNorm five per element; the image head's average pooling
one per pooled element (fvcore has no count for the 3D pooling of clips, so neither do
we: under 0.02% of any video figure). `conv + linear + attention` is the fact sheet's
"MACs only" column; the sum of all kinds is fvcore's total, the paper's "M" in the
variant names.

    python -m dualformer_jax.models.mobile_former.flops   # every variant, as a table
"""

import collections
from typing import Sequence

import jax
import numpy as np

from dualformer_jax.models.mobile_former import blocks as mf_blocks
from dualformer_jax.models.mobile_former import conversion
from dualformer_jax.models.mobile_former import model as mf_model
from dualformer_jax.models.mobile_former import variants

BATCH_NORM_FLOPS_PER_ELEMENT = 2
LAYER_NORM_FLOPS_PER_ELEMENT = 5
KINDS = ('conv', 'linear', 'attention', 'batch_norm', 'layer_norm', 'pool')


def _conv_grid(grid: Sequence[int], kernel: Sequence[int], stride: Sequence[int]
               ) -> tuple[int, ...]:
  """Output grid of a convolution with symmetric padding k // 2."""
  return tuple((g + 2 * (k // 2) - k) // s + 1 for g, k, s in zip(grid, kernel, stride))


def count_flops(model: mf_model._MobileFormerBase,  # pylint: disable=protected-access
                input_shape: Sequence[int]) -> dict[str, int]:
  """Multiply-adds of one forward pass over one input `(H, W)` or `(T, H, W)`, batch 1.

  Returns `{kind: count}` for the kinds in `KINDS`; their sum is the fvcore total.
  """
  grid = tuple(int(s) for s in input_shape)
  if len(grid) != model.input_rank:
    raise ValueError(f'{type(model).__name__} takes a {model.input_rank}-axis input shape, '
                     f'got {tuple(input_shape)}')
  kt = model.depthwise_temporal_kernel()
  per_frame = None if kt is None else 1
  flops = collections.Counter({kind: 0 for kind in KINDS})
  m, d = model.num_tokens, model.token_dim

  def conv_bn(grid, c_in, c_out, size, groups, stride=1, temporal=per_frame):
    kernel = mf_blocks.kernel_shape(size, temporal if size > 1 else per_frame)
    out = _conv_grid(grid, kernel, mf_blocks.stride_shape(stride, per_frame))
    n = int(np.prod(out))
    flops['conv'] += n * c_out * (c_in // groups) * int(np.prod(kernel))
    flops['batch_norm'] += BATCH_NORM_FLOPS_PER_ELEMENT * n * c_out
    return out

  def mobile_to_former(n, c):
    flops['linear'] += 3 * m * d * c  # q, gate, proj
    flops['attention'] += 2 * m * n * c
    flops['layer_norm'] += LAYER_NORM_FLOPS_PER_ELEMENT * m * d

  def former():
    flops['linear'] += 2 * m * d * d + 2 * m * d * (mf_blocks.FFN_RATIO * d)
    flops['attention'] += 2 * m * m * d
    flops['layer_norm'] += 2 * LAYER_NORM_FLOPS_PER_ELEMENT * m * d

  def former_to_mobile(n, c):
    flops['linear'] += 2 * m * d * c  # k, v
    flops['attention'] += 2 * n * m * c

  def hyper(k):
    hidden = d // mf_blocks.HYPER_REDUCTION
    flops['linear'] += d * hidden + hidden * 2 * k

  g = model.groups
  grid = conv_bn(grid, 3, model.stem_channels, 3, 1, stride=2)
  c_in = model.stem_channels
  for kind, e1, c_out, stride, e2 in model.blocks:
    n_in = int(np.prod(grid))
    if kind == 'lite':
      grid = conv_bn(grid, c_in, e1 * c_in, 3, c_in, stride)
      grid = conv_bn(grid, e1 * c_in, c_out, 1, g)
    else:
      mobile_to_former(n_in, c_in)
      former()
      if kind == 'mf':
        hidden = e1 * c_in
        grid = conv_bn(grid, c_in, hidden, 1, g)
        grid = conv_bn(grid, hidden, hidden, 3, hidden, temporal=kt)
        grid = conv_bn(grid, hidden, c_out, 1, g)
        hyper(hidden)
        hyper(hidden)
      else:
        grid = conv_bn(grid, c_in, e1 * c_in, 3, c_in, stride, temporal=kt)
        grid = conv_bn(grid, e1 * c_in, c_out, 1, g)
        grid = conv_bn(grid, c_out, e2 * c_out, 3, c_out, temporal=kt)
        grid = conv_bn(grid, e2 * c_out, c_out, 1, g)
        hyper(e1 * c_in)
        hyper(e2 * c_out)
      former_to_mobile(int(np.prod(grid)), c_out)
    c_in = c_out
  n = int(np.prod(grid))
  mobile_to_former(n, c_in)  # the final bridge
  expanded = 6 * c_in
  conv_bn(grid, c_in, expanded, 1, g)
  if model.input_rank == 2:  # fvcore counts adaptive_avg_pool2d, and has no 3D handle
    flops['pool'] += n * expanded
  flops['linear'] += (expanded + d) * model.num_features + model.num_features * model.num_classes
  flops['batch_norm'] += BATCH_NORM_FLOPS_PER_ELEMENT * model.num_features
  return dict(flops)


def count_parameters(model: mf_model._MobileFormerBase) -> int:  # pylint: disable=protected-access
  """Trainable parameters (BatchNorm statistics excluded), from `jax.eval_shape`."""
  params = conversion.variable_shapes(model)['params']
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))


def report() -> str:
  """A markdown table of every variant: parameters and MFLOPs / GFLOPs, with the facts."""
  lines = ['| variant | input | classes | params | MACs only | total (fvcore) | fact sheet |',
           '|---|---|---|---|---|---|---|']
  for name, kwargs in variants.IMAGE_VARIANTS.items():
    model = mf_model.MobileFormer(num_classes=1000, **kwargs)
    counts = count_flops(model, model.image_size)
    macs = counts['conv'] + counts['linear'] + counts['attention']
    fact = variants.IMAGE_FACTS[name]
    lines.append(f'| `{name}` | {model.image_size[0]}x{model.image_size[1]} | 1000 | '
                 f'{count_parameters(model):,} | {macs / 1e6:.2f} M | '
                 f'{sum(counts.values()) / 1e6:.2f} M | {fact["params"]:,}, '
                 f'{fact["fvcore_mflops"]} M |')
  for name, kwargs in variants.VIDEO_VARIANTS.items():
    model = mf_model.MobileFormer3D(num_classes=400, **kwargs)
    counts = count_flops(model, model.video_size)
    macs = counts['conv'] + counts['linear'] + counts['attention']
    fact = variants.VIDEO_FACTS[name]
    t, h, w = model.video_size
    lines.append(f'| `{name}` | {t}x{h}x{w} | 400 | {count_parameters(model):,} | '
                 f'{macs / 1e9:.3f} G | {sum(counts.values()) / 1e9:.3f} G | '
                 f'{fact["proposal_params_400_m"]}M, {fact["proposal_gflops"]} G |')
  return '\n'.join(lines)


if __name__ == '__main__':
  print(report())
