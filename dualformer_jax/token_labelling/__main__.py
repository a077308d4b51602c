"""Offline Token Labelling: run a frozen teacher once over a built dataset and store its
top-k token labels (docs/token_labelling.md, "Off-line").

    python -m dualformer_jax.token_labelling annotate --teacher workdir/default/checkpoints \\
        --config configs/distill_default.py --output data/token_labels/default

Reads the dataset, clip length, frame interval, crop size, normalization and
`token_labelling.top_k` from the config (`--config.a.b=value` overrides); `--teacher`
defaults to `config.token_labelling.teacher`. Writes `OUTPUT/<split>/` for each of
`--splits` (default: `config.data.train_split`).
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from absl import flags
from ml_collections import config_flags

import dualformer_jax  # noqa: F401  (sets XLA flags before JAX starts its backend)
from dualformer_jax.cli import errors



def _define_flags(argv: list[str]) -> flags.FlagValues:
  """A fresh set of flags per call (`main` may run more than once in a process)."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'Config file[:arg].', flag_values=fv,
                                  lock_config=True, sys_argv=argv)  # overrides from argv
  flags.DEFINE_string('teacher', None, 'Teacher checkpoint (default: '
                      'config.token_labelling.teacher).', flag_values=fv)
  flags.DEFINE_string('output', None, 'Directory for the labels.', flag_values=fv)
  flags.DEFINE_list('splits', None, 'Splits to label (default: config.data.train_split).',
                    flag_values=fv)
  flags.DEFINE_integer('batch_size', 8, 'Clips per teacher call.', flag_values=fv)
  flags.DEFINE_boolean('quiet', False, 'No progress bar.', flag_values=fv)
  flags.DEFINE_boolean('verbose', False, 'Show the full traceback of errors.', flag_values=fv)
  return fv


USAGE = ('usage: python -m dualformer_jax.token_labelling annotate --config CONFIG[:arg] '
         '--output DIR [--teacher CKPT] [--splits a,b] [--batch_size N] [--config.a.b=v ...]')


def _parse(argv: Sequence[str]) -> flags.FlagValues:
  from dualformer_jax.cli import train as train_cli  # pylint: disable=import-outside-toplevel
  argv = list(argv)
  if not argv or argv[0] in ('-h', '--help'):
    print(USAGE)
    print(__doc__)
    sys.exit(0)
  if argv[0] != 'annotate':
    raise errors.UserError(f'unknown command {argv[0]!r}\n{USAGE}')
  argv = argv[1:]
  for i, a in enumerate(argv):
    if a.startswith('--config='):
      argv[i] = '--config=' + train_cli.resolve_config_path(a.split('=', 1)[1])
    elif a == '--config' and i + 1 < len(argv):
      argv[i + 1] = train_cli.resolve_config_path(argv[i + 1])
  fv = _define_flags(['annotate'] + argv)
  try:
    fv(['annotate'] + argv)
    fv.config.keys()
  except Exception as e:  # pylint: disable=broad-except  (absl and ml_collections errors)
    raise errors.UserError(train_cli._diagnose_flags(argv, e)) from e  # pylint: disable=protected-access
  missing = [f'--{n}' for n in ('config', 'output') if fv[n].value is None]
  if missing:
    raise errors.UserError(f'{" and ".join(missing)} required\n{USAGE}')
  return fv


def _main(argv: list[str]) -> int:
  fv = _parse(argv)
  logging.basicConfig(level=logging.INFO, format='%(levelname)s: %(message)s')
  for noisy in ('absl', 'orbax', 'jax._src', 'grain', 'tensorflow_datasets'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  # pylint: disable=import-outside-toplevel
  from dualformer_jax import data, models, train_lib
  from dualformer_jax.token_labelling import annotate
  from dualformer_jax.token_labelling import teacher as teacher_lib
  config = fv.config
  d = config.data
  teacher_path = fv.teacher or config.token_labelling.teacher
  if not teacher_path:
    raise errors.UserError('no teacher: pass --teacher or set config.token_labelling.teacher.')
  name = train_lib.resolve_dataset(config)
  info = data.dataset_info(name, d.data_dir)
  teacher = teacher_lib.load_teacher(
      teacher_path, num_classes=info.num_classes, video_size=(d.clip_len, d.crop_size,
                                                              d.crop_size),
      variant=config.token_labelling.teacher_variant)
  norm = train_lib.normalization(config, models.family_of(teacher.model))
  for split in fv.splits or [d.train_split]:
    if split not in info.splits:
      raise errors.UserError(f'split {split!r} is not in {name} (it has '
                             f'{", ".join(sorted(info.splits))}).')
    meta = annotate.annotate_split(
        name=name, data_dir=d.data_dir, split=split, teacher=teacher, output=fv.output,
        top_k=config.token_labelling.top_k, clip_len=d.clip_len,
        frame_interval=d.frame_interval, crop_size=d.crop_size, normalization=norm,
        batch_size=fv.batch_size, progress=not fv.quiet)
    print(f'Wrote {fv.output}/{split}: {meta["num_videos"]} videos, top-{meta["top_k"]} '
          f'labels on the teacher grid {tuple(meta["grid"])} per clip.')
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  return errors.run_main(_main, argv)


if __name__ == '__main__':
  sys.exit(main())
