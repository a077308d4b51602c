"""Where training feedback goes: `metrics.jsonl`, TensorBoard, and a progress bar.

Only process 0 writes; the other processes get a writer that does nothing.
"""

import json
import os
import sys
import time
from typing import Any

import jax
import tqdm


class MetricsWriter:
  """Appends one JSON object per line to `WORKDIR/metrics.jsonl` and mirrors scalars to
  TensorBoard event files under `WORKDIR/tensorboard`."""

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8')
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, metrics: dict[str, Any], prefix: str) -> None:
    if not self.enabled:
      return
    row = {'step': int(step), **{k: _plain(v) for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(row) + '\n')
    self._jsonl.flush()
    for key, value in row.items():
      if key != 'step' and isinstance(value, (int, float)):
        self._tb.add_scalar(f'{prefix}/{key}', value, int(step))
    self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def _plain(value: Any) -> Any:
  if hasattr(value, 'item'):
    return value.item()
  return value


class Progress:
  """A tqdm bar over train steps: steps/s and ETA from tqdm, loss, lr and clips/s."""

  def __init__(self, total: int, initial: int, clips_per_step: int):
    interactive = sys.stderr.isatty()
    self.clips_per_step = clips_per_step
    self.bar = tqdm.tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True,
                         disable=jax.process_index() != 0, mininterval=0.5 if interactive else 30,
                         desc='train')
    self._last_time = time.perf_counter()
    self._last_step = initial

  def update(self, step: int) -> None:
    self.bar.update(step - self.bar.n)

  def clips_per_sec(self, step: int) -> float:
    """Clips per second since the previous call."""
    now = time.perf_counter()
    rate = (step - self._last_step) * self.clips_per_step / max(now - self._last_time, 1e-9)
    self._last_time, self._last_step = now, step
    return rate

  def show(self, **values: Any) -> None:
    self.bar.set_postfix({k: (f'{v:.4g}' if isinstance(v, float) else v)
                          for k, v in values.items()}, refresh=False)

  def write(self, message: str) -> None:
    if jax.process_index() == 0:
      self.bar.write(message)

  def close(self) -> None:
    self.bar.close()
