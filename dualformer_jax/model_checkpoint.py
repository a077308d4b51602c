"""Model-only orbax checkpoints: variables plus the architecture that reads them.

Layout of a checkpoint directory (also the layout of each step of a training run, which
adds optimizer and data-iterator items beside these):

    <dir>/params         orbax StandardSave of the parameters
    <dir>/batch_stats    BatchNorm running statistics
    <dir>/model_config   JSON: the family and architecture (`models.model_config`)
"""

import os
from typing import Any

import flax.linen as nn
import jax
import orbax.checkpoint as ocp
from etils import epath

from dualformer_jax import models
from dualformer_jax.errors import UserError

MODEL_ITEMS = ('params', 'batch_stats', 'model_config')


def save_model(path: str | os.PathLike, variables: dict[str, Any],
               model: nn.Module, force: bool = False) -> None:
  """Writes `variables` and `model`'s architecture as an orbax checkpoint at `path`."""
  path = epath.Path(os.path.abspath(os.fspath(path)))
  variables = nn.unbox(variables)  # straight from model.init: drop the partitioning boxes
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
    checkpointer.save(
        path,
        ocp.args.Composite(
            params=ocp.args.StandardSave(variables['params']),
            batch_stats=ocp.args.StandardSave(variables.get('batch_stats', {})),
            model_config=ocp.args.JsonSave(models.model_config(model))),
        force=force)


def is_model_checkpoint(path: str | os.PathLike) -> bool:
  path = epath.Path(os.fspath(path))
  return all((path / item).exists() for item in ('params', 'model_config'))


def load_model(path: str | os.PathLike, **model_overrides: Any
               ) -> tuple[nn.Module, dict[str, Any]]:
  """Reads a checkpoint written by `save_model` (or a training step) -> (model, variables).

  `model_overrides` replaces model attributes (e.g. `dtype`); arrays land on the default
  device.
  """
  path = epath.Path(os.path.abspath(os.fspath(path)))
  if not path.exists():
    raise FileNotFoundError(f'checkpoint not found: {path}')
  if not is_model_checkpoint(path):
    raise FileNotFoundError(
        f'{path} is not a dualformer_jax checkpoint (expected the items {MODEL_ITEMS}).')
  # An explicit one-device target: checkpoints written sharded on another topology (a
  # TPU mesh, 8 simulated devices) restore here too.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = lambda tree: jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), tree)
  def restore(checkpointer, **items):
    try:
      return checkpointer.restore(path, ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except  (orbax raises many kinds)
      reason = (str(e).strip().splitlines() or [''])[0]
      raise UserError(f'cannot read checkpoint {path}: {type(e).__name__}: {reason} (an '
                      'unfinished or damaged checkpoint?)') from e

  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
    config = restore(checkpointer, model_config=ocp.args.JsonRestore())['model_config']
    model = models.model_from_config(config, **model_overrides)
    shapes = models.variable_shapes(model)
    items = {'params': ocp.args.StandardRestore(target(shapes['params']))}
    if shapes.get('batch_stats'):
      items['batch_stats'] = ocp.args.StandardRestore(target(shapes['batch_stats']))
    restored = restore(checkpointer, **items)
  return model, {'params': restored['params'],
                 'batch_stats': restored.get('batch_stats') or {}}
