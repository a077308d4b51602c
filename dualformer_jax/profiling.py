"""A JAX profiler trace of chosen training steps, written for TensorBoard.

`config.profile.start_step = S` and `config.profile.num_steps = N` trace steps S+1 ... S+N
of a run (the steps that run after S steps are done, so `start_step=10` skips compilation
and warm-up) into `WORKDIR/profile/`, one trace per process:

    tensorboard --logdir WORKDIR/profile      # then the Profile tab (tensorboard-plugin-profile)

Each step is wrapped in a `StepTraceAnnotation`, so the profiler's step view shows one
bar per train step. The trace stops after the last traced step's outputs are ready.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import jax

log = logging.getLogger(__name__)


def trace_dir(workdir: str) -> str:
  """Where `StepProfiler` writes: `WORKDIR/profile` (TensorBoard's `--logdir`)."""
  return os.path.join(workdir, 'profile')


class StepProfiler:
  """Starts `jax.profiler` before step `start_step + 1` and stops after `num_steps` steps.

  `start_step < 0` or `num_steps <= 0` turns it off. Use as
  `with profiler.step(step): state, metrics = train_step(...)` then
  `profiler.after_step(step, state)`, `step` counting completed steps before the call.
  """

  def __init__(self, workdir: str, start_step: int, num_steps: int):
    self.directory = trace_dir(workdir)
    self.start_step, self.num_steps = int(start_step), int(num_steps)
    self.enabled = self.start_step >= 0 and self.num_steps > 0
    self.active = False

  def _traced(self, step: int) -> bool:
    return self.enabled and self.start_step <= step < self.start_step + self.num_steps

  def step(self, step: int):
    """Context for the call that runs step `step + 1`; starts the trace on the first."""
    if self._traced(step) and not self.active:
      os.makedirs(self.directory, exist_ok=True)
      jax.profiler.start_trace(self.directory)
      self.active = True
      log.info('Profiling steps %d-%d into %s.', step + 1, self.start_step + self.num_steps,
               self.directory)
    if self.active:
      return jax.profiler.StepTraceAnnotation('train', step_num=step + 1)
    return contextlib.nullcontext()

  def after_step(self, step: int, outputs: Any = None) -> None:
    """After the call that ran step `step + 1`: stops once the last traced step is done."""
    if self.active and step + 1 >= self.start_step + self.num_steps:
      self.stop(outputs)

  def stop(self, outputs: Any = None) -> None:
    """Waits for `outputs` (so the trace holds the whole step) and ends the trace."""
    if not self.active:
      return
    if outputs is not None:
      jax.block_until_ready(outputs)
    jax.profiler.stop_trace()
    self.active = False
    log.info('Profile written to %s (tensorboard --logdir %s).', self.directory,
             self.directory)

