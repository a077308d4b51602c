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
  family = models.family_of_variant(args.variant)  # cheap checks first
  state_dict = convert.load_state_dict(args.input)
  num_classes = args.num_classes
  if num_classes is None:
    num_classes = models.registry.head_classes(family, state_dict)
    if num_classes is None:
      raise ValueError(f'the checkpoint has no classifier ({family.head_prefix}*): pass '
                       '--num_classes and --reinit_head.')
  overrides = {}
  if args.video_size:
    overrides['video_size'] = tuple(int(v) for v in args.video_size.split(','))
  token_head = any(k.startswith('cls_head.token_linear.') for k in state_dict)
  if token_head:  # an official Token Labelling checkpoint: keep its token branch
    if 'token_head' not in family.module.__dataclass_fields__:
      raise ValueError(f'the checkpoint has a Token Labelling head (cls_head.token_linear.*), '
                       f'which the {family.name} family does not have.')
    overrides['token_head'] = True
  model = models.create_model(args.variant, num_classes=num_classes, **overrides)
  variables = convert.from_pytorch(state_dict, model, reinit_head=args.reinit_head)
  model_checkpoint.save_model(args.output, variables, model, force=args.overwrite)
  n = sum(int(np.prod(v.shape)) for v in convert.to_pytorch(variables, model).values())
  print(f'Wrote {args.output}: {family.name}/{args.variant}, {num_classes} classes'
        f'{" (Token Labelling head)" if token_head else ""}, {len(state_dict)} tensors read, '
        f'{n:,} values.')


def _to_pytorch(args) -> None:
  from dualformer_jax import convert, model_checkpoint  # pylint: disable=g-import-not-at-top
  model, variables = model_checkpoint.load_model(args.input)
  state_dict = convert.to_pytorch(variables, model)
  convert.save_state_dict(state_dict, args.output,
                          meta={'source': 'dualformer_jax', 'num_classes': model.num_classes})
  print(f'Wrote {args.output}: {len(state_dict)} tensors in the official layout '
        f'({model.num_classes} classes).')


def _inflate(args) -> None:
  from dualformer_jax import convert, model_checkpoint, models  # pylint: disable=g-import-not-at-top
  overrides = {}
  if args.video_size:
    overrides['video_size'] = tuple(int(v) for v in args.video_size.split(','))
  model = models.create_model(args.variant, num_classes=args.num_classes, **overrides)
  variables, report = convert.inflate_with_report(args.input, model)
  model_checkpoint.save_model(args.output, variables, model, force=args.overwrite)
  print(report.summary())
  print(f'Wrote {args.output}: {args.variant} inflated from {args.input}, '
        f'{args.num_classes} classes (new head).')


def main(argv=None) -> int:
  """`dualformer-convert`: user errors as one `error: ...` line (`--verbose`: traceback)."""
  from dualformer_jax.cli import errors  # pylint: disable=g-import-not-at-top
  return errors.run_main(_main, argv)


def _main(argv) -> None:
  from dualformer_jax.cli import errors  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog='python -m dualformer_jax.convert', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--verbose', action='store_true', help='show the traceback of errors')
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

  inflate = sub.add_parser('inflate', help='2D ImageNet .pth/.safetensors -> video orbax '
                           'checkpoint (docs/imagenet_inflation.md)')
  inflate.add_argument('--input', required=True,
                       help='2D image .pth/.safetensors: DualFormer or timm Twins-SVT (DualFormer '
                       'variants), official Mobile-Former (mobile_former_3d_*)')
  inflate.add_argument('--output', required=True, help='orbax checkpoint directory to write')
  inflate.add_argument('--variant', required=True, help='the video variant, e.g. tiny')
  inflate.add_argument('--num_classes', type=int, default=400,
                       help='classes of the new video head (default 400)')
  inflate.add_argument('--video_size', default=None,
                       help='T,H,W the model is built for (default: the variant\'s)')
  inflate.add_argument('--overwrite', action='store_true', help='replace --output if present')
  inflate.set_defaults(run=_inflate)

  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(levelname)s: %(message)s')
  for noisy in ('absl', 'orbax', 'jax'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  if args.command in ('to-flax', 'inflate') and os.path.exists(args.output) and not args.overwrite:
    raise errors.UserError(f'{args.output} exists: pass --overwrite to replace it.')
  try:
    args.run(args)
  except ImportError as e:  # torch, for a .pth
    raise errors.UserError(f'{e} (pip install "dualformer-jax[torch]" reads .pth files)') from e
  except ValueError as e:  # a state dict or checkpoint that does not fit, a bad --video_size
    if errors.is_user_error(e):
      raise
    raise errors.UserError(str(e)) from e


if __name__ == '__main__':
  sys.exit(main())
