"""Convert checkpoints of any model family between the official PyTorch format and ours.

PyTorch -> Flax: reads an official checkpoint (`.pth` mmcv checkpoint or bare state
dict, or `.safetensors`) and writes an orbax checkpoint directory (parameters, BatchNorm
statistics and the model architecture), usable by `train.py` (`config.init_from`) and
`python -m dualformer_jax.predict`.

    python -m dualformer_jax.convert to-flax --input dualformer_tiny.pth \\
        --variant tiny --output checkpoints/tiny_k400

Flax -> PyTorch: reads one of our checkpoints (a converted one, or a training step
directory such as `WORKDIR/checkpoints/1000`) and writes the official state dict, every
key and shape as in the official model (loads with `strict=True`).

    python -m dualformer_jax.convert to-pytorch --input checkpoints/tiny_k400 \\
        --output tiny_k400.pth      # or .safetensors
"""

import argparse
import logging
import os
import sys

import numpy as np


def _to_flax(args) -> None:
  from dualformer_jax import convert, model_checkpoint, models  # pylint: disable=g-import-not-at-top
  state_dict = convert.load_state_dict(args.input)
  family = models.family_of_variant(args.variant)
  num_classes = args.num_classes
  if num_classes is None:
    num_classes = models.registry.head_classes(family, state_dict)
    if num_classes is None:
      raise ValueError(f'the checkpoint has no classifier ({family.head_prefix}*): pass '
                       '--num_classes and --reinit_head.')
  overrides = {}
  if args.video_size:
    overrides['video_size'] = tuple(int(v) for v in args.video_size.split(','))
  model = models.create_model(args.variant, num_classes=num_classes, **overrides)
  variables = convert.from_pytorch(state_dict, model, reinit_head=args.reinit_head)
  model_checkpoint.save_model(args.output, variables, model, force=args.overwrite)
  n = sum(int(np.prod(v.shape)) for v in convert.to_pytorch(variables, model).values())
  print(f'Wrote {args.output}: {family.name}/{args.variant}, {num_classes} classes, '
        f'{len(state_dict)} tensors read, {n:,} values.')


def _to_pytorch(args) -> None:
  from dualformer_jax import convert, model_checkpoint  # pylint: disable=g-import-not-at-top
  model, variables = model_checkpoint.load_model(args.input)
  state_dict = convert.to_pytorch(variables, model)
  convert.save_state_dict(state_dict, args.output,
                          meta={'source': 'dualformer_jax', 'num_classes': model.num_classes})
  print(f'Wrote {args.output}: {len(state_dict)} tensors in the official layout '
        f'({model.num_classes} classes).')


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m dualformer_jax.convert', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)

  to_flax = sub.add_parser('to-flax', help='official .pth/.safetensors -> orbax checkpoint')
  to_flax.add_argument('--input', required=True, help='.pth or .safetensors file')
  to_flax.add_argument('--output', required=True, help='orbax checkpoint directory to write')
  to_flax.add_argument('--variant', required=True, help='the model variant, e.g. tiny, small, base (DualFormer), lvt_k400 '
                       '(`python -m dualformer_jax.flops --help` lists all)')
  to_flax.add_argument('--num_classes', type=int, default=None,
                       help='classes of the model (default: those of the checkpoint head)')
  to_flax.add_argument('--video_size', default=None,
                       help='T,H,W the model is built for (default: the variant\'s)')
  to_flax.add_argument('--reinit_head', action='store_true',
                       help='start a new classifier when the checkpoint\'s does not fit '
                            '--num_classes (fine-tuning)')
  to_flax.add_argument('--overwrite', action='store_true', help='replace --output if present')
  to_flax.set_defaults(run=_to_flax)

  to_torch = sub.add_parser('to-pytorch', help='orbax checkpoint -> official .pth/.safetensors')
  to_torch.add_argument('--input', required=True,
                        help='our checkpoint directory (converted, or a training step)')
  to_torch.add_argument('--output', required=True, help='.pth or .safetensors file to write')
  to_torch.set_defaults(run=_to_pytorch)

  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(levelname)s: %(message)s')
  for noisy in ('absl', 'orbax', 'jax'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  if args.command == 'to-flax' and os.path.exists(args.output) and not args.overwrite:
    sys.exit(f'{args.output} exists: pass --overwrite to replace it.')
  try:
    args.run(args)
  except (FileNotFoundError, ValueError, ImportError) as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  main()
