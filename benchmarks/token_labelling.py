"""Cost of Token Labelling: the on-line and off-line distillation steps against the plain
step.

Builds `configs/default.py` (the plain nano step) and `configs/distill_default.py` (the
same student with the Token Labelling head, plus the frozen teacher's forward pass in
the same jitted step) exactly as `train.py` does, and the off-line step (the same student,
soft targets taken from the batch, as `config.token_labelling.labels` trains), then times
their train steps on the same random batch in alternating rounds, so a machine shared
with other work slows all alike. Prints the median seconds per step and the ratios to the
plain step. (The off-line row leaves out the host's work of mapping the stored labels
onto each clip, `offline.AddTargets`, which runs in the input pipeline.) Needs the default run's
checkpoint (the teacher) and its dataset:

    python train.py --config configs/default.py --workdir workdir/default
    python benchmarks/token_labelling.py --rounds 5 --steps 5
    python benchmarks/token_labelling.py --teacher PATH      # another teacher
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import default as default_config  # noqa: E402
from configs import distill_default  # noqa: E402
import optax  # noqa: E402

from dualformer_jax import models  # noqa: E402
from dualformer_jax import train_lib  # noqa: E402
from dualformer_jax.token_labelling import teacher as teacher_lib  # noqa: E402
from dualformer_jax.token_labelling import train_step as tl_step  # noqa: E402


def build(config, offline: bool = False):
  """`(step, state, batch)` of `config`, as train.py builds them; `offline`: the Token
  Labelling step that takes the soft targets from the batch (no teacher)."""
  s = train_lib.setup(config)
  if offline:
    step = tl_step.make_train_step(s.model, None, s.runtime.tx, optax.constant_schedule(0.0),
                                   normalization=train_lib.normalization(
                                       config, models.family_of(s.model)))
    s.runtime.use_teacher(step, {}, {})
  state = s.runtime.init_state(jax.random.PRNGKey(config.seed))
  d = config.data
  rng = np.random.default_rng(0)
  batch = {'video': rng.integers(0, 256, (config.train.batch_size, d.clip_len, d.crop_size,
                                          d.crop_size, 3), dtype=np.uint8),
           'label': rng.integers(0, s.num_classes, (config.train.batch_size,), dtype=np.int32)}
  if offline:
    grid = teacher_lib.token_grid(s.model)
    logits = rng.standard_normal((config.train.batch_size, *grid, s.num_classes))
    batch['targets'] = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(
        np.float32)  # [b, d, h, w, K]
  return s.runtime, state, batch


def time_steps(runtime, state, batch, steps: int):
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = runtime.train_step(state, batch)
  jax.block_until_ready(metrics)
  return state, (time.perf_counter() - start) / steps


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--teacher', default=distill_default.TEACHER)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--steps', type=int, default=5, help='timed steps per round')
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args(argv)
  runs = {'plain': build(default_config.get_config()),
          'token_labelling': build(distill_default.get_config(args.teacher)),
          'offline': build(distill_default.get_config(args.teacher), offline=True)}
  states, times = {}, {name: [] for name in runs}
  for name, (runtime, state, batch) in runs.items():  # compile and warm up
    states[name], _ = time_steps(runtime, state, batch, 1)
  for _ in range(args.rounds):
    for name, (runtime, _, batch) in runs.items():
      states[name], seconds = time_steps(runtime, states[name], batch, args.steps)
      times[name].append(seconds)
  median = {name: statistics.median(t) for name, t in times.items()}
  result = {'seconds_per_step': median,
            'ratio': median['token_labelling'] / median['plain'],
            'ratio_offline': median['offline'] / median['plain'],
            'ratio_online_offline': median['token_labelling'] / median['offline'],
            'rounds': args.rounds, 'steps': args.steps, 'devices': jax.device_count()}
  if args.json:
    print(json.dumps(result))
  else:
    for name, seconds in median.items():
      print(f'{name:16s} {seconds:.3f} s/step')
    print(f'ratio (token_labelling / plain): {result["ratio"]:.2f}')
    print(f'ratio (offline / plain): {result["ratio_offline"]:.2f}')
    print(f'ratio (token_labelling / offline): {result["ratio_online_offline"]:.2f}')


if __name__ == '__main__':
  main()
