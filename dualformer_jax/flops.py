"""Parameters and FLOPs of any model family, in the official (fvcore) convention.

One multiply-add counts as one FLOP; element-wise operations are not counted (each
family's `count_flops` says what it counts by kind).

    python -m dualformer_jax.flops --variant tiny --clip 32,224,224
    python -m dualformer_jax.flops --all              # also Mobile-Former-3D, marked as ours
    python -m dualformer_jax.flops --variant lvt_k400
"""

import argparse
import dataclasses
import sys
from typing import Sequence

import numpy as np

from dualformer_jax import models
from dualformer_jax.cli import errors


@dataclasses.dataclass
class FlopCount:
  """Multiply-adds of one forward pass over one input, by kind of operation."""
  by_kind: dict[str, int]

  @property
  def total(self) -> int:
    return int(sum(self.by_kind.values()))

  def __getattr__(self, kind: str) -> int:  # count.linear, count.attention, ...
    by_kind = self.__dict__.get('by_kind', {})
    if kind in by_kind:
      return by_kind[kind]
    raise AttributeError(kind)


def count_flops(model, input_shape: Sequence[int] | None = None) -> FlopCount:
  """FLOPs of one forward pass over one input `(T, H, W)` (default: the model's)."""
  family = models.family_of(model)
  if family.count_flops is None:
    raise ValueError(f'the {family.name} family has no FLOPs count.')
  shape = tuple(input_shape) if input_shape else models.input_shape(model)
  return FlopCount(dict(family.count_flops(model, shape)))


def count_parameters(model) -> dict[str, int]:
  """Parameter counts: backbone, head and total (BatchNorm running stats excluded)."""
  import jax  # pylint: disable=g-import-not-at-top
  params = models.variable_shapes(model)['params']
  head_name = models.family_of(model).head_module
  count = lambda tree: int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))
  total = count(params)
  head = count(params.get(head_name, {}))
  return {'backbone': total - head, 'head': head, 'total': total}


def report(variant: str, input_shape: Sequence[int] | None, num_classes: int) -> str:
  """A few lines: parameters, GFLOPs by kind, and the official figures where known."""
  model = models.create_model(variant, num_classes=num_classes)
  family = models.family_of(model)
  shape = tuple(input_shape) if input_shape else models.input_shape(model)
  flops = count_flops(model, shape)
  params = count_parameters(model)
  g = lambda x: f'{x / 1e9:.2f}'
  kinds = ', '.join(f'{k.replace("_", " ")} {g(v)}' for k, v in flops.by_kind.items())
  lines = [
      f'{family.name}/{variant}, input {"x".join(map(str, shape))}, {num_classes} classes',
      f'  parameters: backbone {params["backbone"]:,}, head {params["head"]:,}, '
      f'total {params["total"]:,}',
      f'  GFLOPs per view: {g(flops.total)} ({kinds})',
  ]
  official = family.official.get(variant, {})
  official_input = tuple(official.get('gflops_input', models.input_shape(model)))
  if 'gflops' in official and shape == official_input:
    extra = ''
    if 'backbone_params' in official:
      extra = f', {official["backbone_params"]:,} backbone parameters'
    elif 'params' in official:
      extra = f', {official["params"]:,} parameters'
    lines.append(f'  official: {official["gflops"]} GFLOPs{extra} '
                 f'(ratio {flops.total / 1e9 / official["gflops"]:.4f})')
  elif 'proposal_gflops' in official and shape == tuple(official['proposal_input']):
    # A reconstruction (Mobile-Former-3D): our own measured figure, never published.
    lines.append(f'  ours, not official (our reconstruction\'s cost table): '
                 f'{official["proposal_gflops"]} GFLOPs '
                 f'(ratio {flops.total / 1e9 / official["proposal_gflops"]:.4f})')
  return '\n'.join(lines)


def reference_input(facts) -> tuple[int, ...] | None:
  """The input of a variant's reference figure: official, else our reconstruction's;
  None when it has neither (no GFLOPs figure to compare with)."""
  if 'gflops' in facts:
    return tuple(facts.get('gflops_input', ())) or None
  if 'proposal_gflops' in facts:
    return tuple(facts['proposal_input'])
  return None


def _parse_shape(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected T,H,W (or H,W), got {text!r}') from None


def main(argv=None) -> int:
  """`dualformer-flops`: user errors as one `error: ...` line (`--verbose`: traceback)."""
  return errors.run_main(_main, argv)


def _main(argv) -> None:
  parser = errors.ArgumentParser(
      prog='python -m dualformer_jax.flops', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--variant', default='tiny', choices=sorted(models.all_variants()),
                      metavar='VARIANT', help='any family\'s variant (default tiny); one of '
                      + ', '.join(sorted(models.all_variants())))
  parser.add_argument('--clip', type=_parse_shape, default=None,
                      help='T,H,W of one view (H,W for image models; default: the '
                           'variant\'s)')
  parser.add_argument('--num_classes', type=int, default=400)
  parser.add_argument('--all', action='store_true',
                      help='every variant with official figures, at its official input, '
                           'and the reconstructions (Mobile-Former-3D) with our figures, '
                           'marked as ours')
  parser.add_argument('--verbose', action='store_true', help='show the traceback of errors')
  args = parser.parse_args(argv)
  if args.all:
    for family in models.families().values():
      for variant, facts in family.official.items():
        if 'gflops' in facts or 'proposal_gflops' in facts:
          print(report(variant, reference_input(facts),
                       facts.get('num_classes', args.num_classes)))
  else:
    print(report(args.variant, args.clip, args.num_classes))


if __name__ == '__main__':
  sys.exit(main())
