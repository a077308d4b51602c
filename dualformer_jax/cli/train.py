"""Train or evaluate a model (`dualformer-train`, or `python train.py` in a checkout).

    dualformer-train --config configs/default.py --workdir workdir/default
    dualformer-train --config configs/k400.py:tiny --workdir /mnt/shared/k400_tiny \\
        --config.data.data_dir=/mnt/shared/tfds
    dualformer-train --config configs/default.py --workdir workdir/default --mode eval

`--config configs/x.py` is read relative to the current directory; when that file does not
exist, the configs shipped with the package (`dualformer_jax/configs`, the checkout's
`configs/`) are used, so an installed package finds `configs/default.py` anywhere.

Several hosts (e.g. a TPU pod): run the same command on every host; JAX finds the
others (`jax.distributed.initialize()`). On other clusters pass --coordinator_address,
--num_processes and --process_id.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import sys
from typing import Sequence

from absl import flags
from ml_collections import config_flags

import dualformer_jax  # noqa: F401  (sets XLA flags before JAX starts its backend)
from dualformer_jax import host_memory
from dualformer_jax.cli import errors

FLAGS = flags.FlagValues()
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file[:arg].',
                                          flag_values=FLAGS, lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, metrics and TensorBoard go here.',
                               flag_values=FLAGS)
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'Train (resuming if possible) '
                          'or evaluate the latest checkpoint.', flag_values=FLAGS)
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, '--mode eval: a checkpoint to evaluate '
                                  'instead of the latest in the workdir.', flag_values=FLAGS)
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 '
                                   '(multi-process runs outside TPU pods).', flag_values=FLAGS)
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run.',
                                      flag_values=FLAGS)
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process (0-based).',
                                   flag_values=FLAGS)
flags.DEFINE_boolean('verbose', False, 'Show the full traceback of errors.', flag_values=FLAGS)

USAGE = ('usage: dualformer-train --config configs/<file>.py[:arg] --workdir DIR '
         '[--mode train|eval] [--checkpoint DIR] [--config.a.b=value ...] [--verbose]')


def shipped_configs_dir() -> str | None:
  """The configs shipped with the package (installed) or beside it (a checkout)."""
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for candidate in (os.path.join(package, 'configs'),
                    os.path.join(os.path.dirname(package), 'configs')):
    if os.path.isfile(os.path.join(candidate, 'default.py')):
      return candidate
  return None


def resolve_config_path(spec: str) -> str:
  """`configs/x.py[:arg]` as given if the file exists, else the shipped config of that name."""
  path, sep, arg = spec.partition(':')
  if os.path.exists(path):
    return spec
  shipped = shipped_configs_dir()
  parts = os.path.normpath(path).split(os.sep)
  if shipped and len(parts) == 2 and parts[0] == 'configs':
    candidate = os.path.join(shipped, parts[1])
    if os.path.isfile(candidate):
      return candidate + sep + arg
  return spec


def load_config(spec: str):
  """The config `configs/x.py[:arg]` names (a shipped one if that path does not exist)."""
  path, _, arg = resolve_config_path(spec).partition(':')
  module_spec = importlib.util.spec_from_file_location('_dualformer_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _diagnose_flags(argv: Sequence[str], exc: Exception) -> str:
  """One line naming what is wrong with the command line (absl/ml_collections errors)."""
  spec = None
  for i, a in enumerate(argv):
    if a.startswith('--config='):
      spec = a.split('=', 1)[1]
    elif a == '--config' and i + 1 < len(argv):
      spec = argv[i + 1]
  if spec is not None:
    path = spec.partition(':')[0]
    if not os.path.isfile(path):
      shipped = shipped_configs_dir()
      choices = (', '.join(sorted(f'configs/{f}' for f in os.listdir(shipped)
                                  if f.endswith('.py') and not f.startswith('_')))
                 if shipped else 'configs/default.py')
      return f'config file not found: {path} (one of: {choices})'
    try:
      config = load_config(spec)
    except Exception as e:  # pylint: disable=broad-except
      return f'cannot load config {spec}: {type(e).__name__}: {e}'
    for a in argv:
      if not a.startswith('--config.'):
        continue
      key, _, value = a[len('--config.'):].partition('=')
      node, walked = config, []
      for part in key.split('.'):
        keys = list(node.keys()) if hasattr(node, 'keys') else []
        if part not in keys:
          where = '.'.join(['config'] + walked)
          close = _closest_key(part, keys)
          hint = (f'did you mean --config.{".".join(walked + [close])}?' if close else
                  f'{where} has: {", ".join(sorted(keys))}')
          return f'config key config.{key} does not exist: {hint}'
        node, walked = node[part], walked + [part]
      if not a.partition('=')[1]:
        return f'--config.{key} needs a value: --config.{key}=VALUE'
      return (f'--config.{key}={value}: {_first_line(exc)} '
              f'(config.{key} is {type(node).__name__}, e.g. {node!r})')
  return f'{_first_line(exc)}\n{USAGE}'


def _closest_key(name: str, keys: Sequence[str]) -> str | None:
  """The key `name` most likely means: by its initials (`lr`: learning_rate, `wd`:
  weight_decay, `lrr` close to `lr`), as a prefix (`learn`), or as a typo (difflib)."""
  def score(key: str) -> float:
    ratio = difflib.SequenceMatcher(None, name, key).ratio()
    words = key.split('_')
    if len(words) > 1:
      initials = ''.join(w[0] for w in words if w)
      ratio = max(ratio, 1.0 if name == initials else
                  0.95 * difflib.SequenceMatcher(None, name, initials).ratio())
    if len(name) >= 2 and key.startswith(name):
      ratio = max(ratio, 0.6 + 0.4 * len(name) / len(key))
    return ratio
  scored = sorted(((score(k), k) for k in keys), key=lambda s: -s[0])
  return scored[0][1] if scored and scored[0][0] >= 0.4 else None


def _first_line(exc: BaseException) -> str:
  text = str(exc).strip().splitlines()
  return text[0] if text else type(exc).__name__


def parse_flags(argv: Sequence[str]) -> None:
  argv = list(argv)
  for i, a in enumerate(argv):  # installed package: shipped configs by their checkout path
    if a.startswith('--config='):
      argv[i] = '--config=' + resolve_config_path(a.split('=', 1)[1])
    elif a == '--config' and i + 1 < len(argv):
      argv[i + 1] = resolve_config_path(argv[i + 1])
  if '--help' in argv or '-h' in argv or '--helpfull' in argv:
    print(USAGE)
    print(__doc__)
    print(FLAGS.get_help())
    sys.exit(0)
  try:
    FLAGS(['dualformer-train'] + argv)
  except Exception as e:  # pylint: disable=broad-except  (absl and ml_collections errors)
    raise errors.UserError(_diagnose_flags(argv, e)) from e
  try:  # ml_collections reports a config that failed to load only when it is read
    _CONFIG.value.keys()
  except Exception as e:  # pylint: disable=broad-except
    raise errors.UserError(_diagnose_flags(argv, e)) from e
  missing = [f'--{n}' for n in ('config', 'workdir') if FLAGS[n].value is None]
  if missing:
    raise errors.UserError(f'{" and ".join(missing)} required\n{USAGE}')


def initialize_distributed() -> None:
  import jax  # pylint: disable=import-outside-toplevel
  if _COORDINATOR.value:
    if jax.config.jax_platforms in (None, '', 'cpu') or 'cpu' in str(jax.config.jax_platforms):
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  elif os.environ.get('TPU_WORKER_HOSTNAMES') or os.environ.get('MEGASCALE_COORDINATOR_ADDRESS'):
    jax.distributed.initialize()


def _main(argv: list[str]) -> int:
  parse_flags(argv)
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
  for noisy in ('absl', 'orbax', 'jax._src', 'grain', 'tensorflow_datasets'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  if host_memory.huge_pages_active():
    logging.info('host memory: transparent huge pages for malloc (%s=0 turns them off)',
                 host_memory.OPT_ENV)
  initialize_distributed()
  from dualformer_jax import models, train_lib  # pylint: disable=import-outside-toplevel
  models.family_of_variant(_CONFIG.value.model.variant)  # cheap checks before any work
  if _MODE.value == 'eval':
    metrics = train_lib.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _CHECKPOINT.value)
    print(' '.join(f'{k}={v:.2f}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in metrics.items()))
  else:
    train_lib.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  if argv is None:  # the command line, not a call from Python: a fresh process of its own
    host_memory.reexec_with_huge_pages()
  return errors.run_main(_main, argv)


if __name__ == '__main__':
  sys.exit(main())
