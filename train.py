"""Train or evaluate DualFormer.

    python train.py --config configs/default.py --workdir workdir/default
    python train.py --config configs/k400.py:tiny --workdir /mnt/shared/k400_tiny \
        --config.data.data_dir=/mnt/shared/tfds
    python train.py --config configs/default.py --workdir workdir/default --mode eval

Several hosts (e.g. a TPU pod): run the same command on every host; JAX finds the
others (`jax.distributed.initialize()`). On other clusters pass --coordinator_address,
--num_processes and --process_id.
"""

import logging
import os

from absl import app
from absl import flags
from ml_collections import config_flags

import dualformer_jax  # noqa: F401  (sets XLA flags before JAX starts its backend)

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, metrics and TensorBoard go here.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'Train (resuming if possible) '
                          'or evaluate the latest checkpoint.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, '--mode eval: a checkpoint to evaluate '
                                  'instead of the latest in the workdir.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 '
                                   '(multi-process runs outside TPU pods).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process (0-based).')
flags.mark_flags_as_required(['config', 'workdir'])


def initialize_distributed() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if _COORDINATOR.value:
    if jax.config.jax_platforms in (None, '', 'cpu') or 'cpu' in str(jax.config.jax_platforms):
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  elif os.environ.get('TPU_WORKER_HOSTNAMES') or os.environ.get('MEGASCALE_COORDINATOR_ADDRESS'):
    jax.distributed.initialize()


def main(argv):
  del argv
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
  for noisy in ('absl', 'orbax', 'jax._src', 'grain', 'tensorflow_datasets'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  initialize_distributed()
  from dualformer_jax import train_lib  # pylint: disable=g-import-not-at-top
  if _MODE.value == 'eval':
    metrics = train_lib.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _CHECKPOINT.value)
    print(' '.join(f'{k}={v:.2f}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in metrics.items()))
  else:
    train_lib.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
