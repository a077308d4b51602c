"""Per-step time of the default runs' models, back to back in one process.

Builds each family's `configs/default.py:<family>` (model, optimizer, jitted train
step exactly as `train.py` does), then times their train steps on random batches of
the config's shape in alternating rounds, so a machine shared with other work slows
all of them alike. Reports the median seconds per step and each one's ratio to the
first family: the time budget of the DualFormer default run (768 steps) in another
family's steps is `768 / ratio`.

    python benchmarks/default_step_ratio.py                       # dualformer, lvt
    python benchmarks/default_step_ratio.py --families dualformer,lvt --rounds 7
    python benchmarks/default_step_ratio.py --set lvt:model.variant=lvt_mini
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
from dualformer_jax import train_lib  # noqa: E402


def _override(config, assignment: str) -> None:
  key, value = assignment.split('=', 1)
  *parents, leaf = key.split('.')
  target = config
  for p in parents:
    target = target[p]
  target[leaf] = type(target[leaf])(json.loads(value)) if isinstance(
      target[leaf], (tuple, list)) else type(target[leaf])(value)


def build(family: str, assignments: list[str]):
  """`(step_fn, state, batch, config)` of the family's default config."""
  config = default_config.get_config(family)
  for a in assignments:
    _override(config, a)
  s = train_lib.setup(config)
  state = s.runtime.init_state(jax.random.PRNGKey(config.seed))
  d = config.data
  rng = np.random.default_rng(0)
  batch = {'video': rng.integers(0, 256, (config.train.batch_size, d.clip_len, d.crop_size,
                                          d.crop_size, 3), dtype=np.uint8),
           'label': rng.integers(0, s.num_classes, (config.train.batch_size,), dtype=np.int32)}
  return s.runtime.train_step, state, batch, config


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--families', default='dualformer,lvt')
  parser.add_argument('--rounds', type=int, default=5, help='alternating timing rounds')
  parser.add_argument('--steps', type=int, default=8, help='steps per family per round')
  parser.add_argument('--set', action='append', default=[],
                      help='FAMILY:key.path=value, a config override for one family')
  parser.add_argument('--json', default='', help='also write the result here')
  args = parser.parse_args(argv)
  families = args.families.split(',')
  runs = {}
  for f in families:
    sets = [a.split(':', 1)[1] for a in args.set if a.split(':', 1)[0] == f]
    step, state, batch, config = build(f, sets)
    for _ in range(2):  # compile and warm up
      state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    runs[f] = dict(step=step, state=state, batch=batch, times=[],
                   variant=config.model.variant, batch_size=config.train.batch_size)
  for _ in range(args.rounds):
    for f in families:
      r = runs[f]
      start = time.perf_counter()
      for _ in range(args.steps):
        r['state'], metrics = r['step'](r['state'], r['batch'])
      jax.block_until_ready(metrics)
      r['times'].append((time.perf_counter() - start) / args.steps)
  base = statistics.median(runs[families[0]]['times'])
  result = {'platform': jax.devices()[0].platform, 'cpus': os.cpu_count(),
            'rounds': args.rounds, 'steps_per_round': args.steps, 'overrides': args.set,
            'families': {}}
  for f in families:
    r = runs[f]
    sec = statistics.median(r['times'])
    result['families'][f] = dict(variant=r['variant'], batch_size=r['batch_size'],
                                 seconds_per_step=round(sec, 4), ratio=round(sec / base, 3))
    print(f'{f:>18} {r["variant"]:>14}  batch {r["batch_size"]}  {sec * 1e3:8.1f} ms/step  '
          f'ratio {sec / base:.3f}  (768 {families[0]} steps = {768 * base / sec:.0f} steps)')
  if args.json:
    with open(args.json, 'w') as fh:
      json.dump(result, fh, indent=1)
  return result


if __name__ == '__main__':
  main()
