"""Training checkpoints with orbax: the whole state plus the data iterator, together.

Each step directory `WORKDIR/checkpoints/<step>/` holds the items

    params, batch_stats   the model (also readable by `model_checkpoint.load_model`)
    model_config          the architecture (JSON)
    opt_state             optimizer state
    meta                  step and RNG key
    data_iter             the grain iterator of each process

Saves are asynchronous. The latest `keep` checkpoints are kept, and the best by eval
top-1. A checkpoint that fails to restore (interrupted or corrupted) is reported and the
previous one is used.
"""

import logging
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers

from dualformer_jax.train_state import TrainState

log = logging.getLogger(__name__)

ITEMS = ('params', 'batch_stats', 'model_config', 'opt_state', 'meta', 'data_iter')


def _best_top1(metrics: dict[str, Any]) -> float:
  return float(metrics['top1'])


class TrainCheckpointer:
  """An orbax `CheckpointManager` for `TrainState` + data iterator + model config."""

  def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True):
    self.directory = epath.Path(os.path.abspath(os.fspath(directory)))
    self._report_interrupted_saves()
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(get_metric_fn=_best_top1, n=1,
                                  keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True, create=True)
    handlers = {
        'params': ocp.StandardCheckpointHandler(),
        'batch_stats': ocp.StandardCheckpointHandler(),
        'opt_state': ocp.StandardCheckpointHandler(),
        'meta': ocp.StandardCheckpointHandler(),
        'model_config': ocp.JsonCheckpointHandler(),
        'data_iter': grain.checkpoint.CheckpointHandler(),
    }
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_handlers=handlers)

  def _report_interrupted_saves(self) -> None:
    if not self.directory.exists():
      return
    for path in sorted(self.directory.iterdir()):
      if 'tmp' in path.name:
        log.warning('Found an incomplete checkpoint %s (a save was interrupted); it is '
                    'ignored and removed.', path)

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state: TrainState, data_iter: Any, model_config: dict[str, Any],
           metrics: dict[str, float] | None = None, force: bool = False) -> bool:
    step = int(jax.device_get(state.step))
    items = dict(
        params=ocp.args.StandardSave(state.params),
        opt_state=ocp.args.StandardSave(state.opt_state),
        meta=ocp.args.StandardSave({'step': state.step, 'rng': state.rng}),
        model_config=ocp.args.JsonSave(model_config),
        data_iter=grain.checkpoint.CheckpointSave(data_iter),
    )
    if jax.tree_util.tree_leaves(state.batch_stats):  # orbax refuses an empty tree (LVT)
      items['batch_stats'] = ocp.args.StandardSave(state.batch_stats)
    return self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics,
                             force=force)

  def restore(self, abstract_state: TrainState, data_iter: Any, step: int | None = None
              ) -> tuple[TrainState, int] | None:
    """Restores `step` (default: the newest that restores cleanly) into the layout of
    `abstract_state` (arrays with shardings) and `data_iter`; None if there is none."""
    steps = [step] if step is not None else sorted(self.all_steps(), reverse=True)
    for candidate in steps:
      try:
        has_stats = bool(jax.tree_util.tree_leaves(abstract_state.batch_stats))
        stats = ({'batch_stats': ocp.args.StandardRestore(abstract_state.batch_stats)}
                 if has_stats else {})
        restored = self.manager.restore(candidate, args=ocp.args.Composite(
            **stats,
            params=ocp.args.StandardRestore(abstract_state.params),
            opt_state=ocp.args.StandardRestore(abstract_state.opt_state),
            meta=ocp.args.StandardRestore({'step': abstract_state.step,
                                           'rng': abstract_state.rng}),
            data_iter=grain.checkpoint.CheckpointRestore(data_iter)))
      except Exception as e:  # pylint: disable=broad-except
        if step is not None:
          raise
        log.error('Checkpoint at step %d could not be restored (%s: %s); trying the '
                  'previous one.', candidate, type(e).__name__, str(e)[:300])
        continue
      state = TrainState(step=restored['meta']['step'], params=restored['params'],
                         batch_stats=restored['batch_stats'] if has_stats else {},
                         opt_state=restored['opt_state'], rng=restored['meta']['rng'])
      return state, candidate
    return None

  def wait_until_finished(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
