"""Cost of on-line Token Labelling: the distillation step against the plain step.

Builds `configs/default.py` (the plain nano step) and `configs/distill_default.py` (the
same student with the Token Labelling head, plus the frozen teacher's forward pass in
the same jitted step) exactly as `train.py` does, then times their train steps on the
same random batch in alternating rounds, so a machine shared with other work slows both
alike. Prints the median seconds per step and the ratio. Needs the default run's
checkpoint (the teacher) and its dataset:

    python train.py --config configs/default.py --workdir workdir/default
    python benchmarks/token_labelling.py --rounds 5 --steps 5
    python benchmarks/token_labelling.py --teacher PATH      # another teacher

The off-line variant (stored teacher labels) is not built yet, so there is no third row.
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
from dualformer_jax import train_lib  # noqa: E402


def build(config):
  """`(step, state, batch)` of `config`, as train.py builds them."""
  s = train_lib.setup(config)
  state = s.runtime.init_state(jax.random.PRNGKey(config.seed))
  d = config.data
  rng = np.random.default_rng(0)
  batch = {'video': rng.integers(0, 256, (config.train.batch_size, d.clip_len, d.crop_size,
                                          d.crop_size, 3), dtype=np.uint8),
           'label': rng.integers(0, s.num_classes, (config.train.batch_size,), dtype=np.int32)}
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
          'token_labelling': build(distill_default.get_config(args.teacher))}
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
            'rounds': args.rounds, 'steps': args.steps, 'devices': jax.device_count()}
  if args.json:
    print(json.dumps(result))
  else:
    for name, seconds in median.items():
      print(f'{name:16s} {seconds:.3f} s/step')
    print(f'ratio (token_labelling / plain): {result["ratio"]:.2f}')


if __name__ == '__main__':
  main()
