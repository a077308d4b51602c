"""The CPU formulations against the standard (GPU/TPU) ones, compiled side by side.

`dualformer_jax/models/formulations.py` switches, by backend, between the formulations
written for XLA:CPU (chunked attention loop, hand-written Dense/PEG/GELU VJPs) and the
standard ones (one batched attention, autodiff, a grouped convolution). This script
compiles the same step both ways on the current backend and prints, for each: XLA's cost
analysis (FLOPs, bytes accessed), the executable's memory (arguments + outputs +
temporaries), and the measured time of alternating runs. On CPU it shows what the CPU
paths buy there; run on a GPU or TPU it checks the default (standard) choice there.

    python benchmarks/backend_paths.py --variant tiny --clip 16,224,224
    python benchmarks/backend_paths.py --variant mini --clip 8,56,56 --mode forward
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

import model as bench  # noqa: E402  (benchmarks/model.py)
from dualformer_jax import models  # noqa: E402
from dualformer_jax.models import formulations  # noqa: E402

GiB = 1024 ** 3


def cost(compiled) -> dict[str, float]:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  analysis = analysis or {}
  return {'flops': float(analysis.get('flops', float('nan'))),
          'bytes': float(analysis.get('bytes accessed', float('nan')))}


def compile_path(choice: str, variant: str, clip, batch: int, mode: str):
  """(compiled step, its run() closure) traced with formulation `choice`."""
  model = models.create_model(variant, num_classes=400)
  with formulations.use(choice):
    compiled, run, seconds = bench.build_step(model, clip, batch, mode)
  return compiled, run, seconds


def main(argv=None):
  parser = bench.step_parser('python benchmarks/backend_paths.py', __doc__)
  parser.add_argument('--rounds', type=int, default=3, help='alternating timed rounds')
  args = parser.parse_args(argv)
  clip = args.clip
  print(f'{args.variant} {args.mode} {"x".join(map(str, clip))} batch {args.batch} on '
        f'{jax.devices()[0].device_kind} ({jax.default_backend()}), default formulation: '
        f'{formulations.active()}')
  paths = {}
  for choice in ('cpu', 'standard'):
    compiled, run, seconds = compile_path(choice, args.variant, clip, args.batch, args.mode)
    bench.block(run())  # warm-up
    paths[choice] = dict(compiled=compiled, run=run, compile_s=seconds, times=[],
                         cpu_times=[], memory=bench.compiled_memory_bytes(compiled),
                         **cost(compiled))
  for _ in range(args.rounds):
    for p in paths.values():
      wall, cpu = time.perf_counter(), time.process_time()
      bench.block(p['run']())
      p['times'].append(time.perf_counter() - wall)
      p['cpu_times'].append(time.process_time() - cpu)
  print('\n| formulation | XLA GFLOP | GB accessed | memory GiB | compile s | median s '
        '| median process CPU s |')
  print('|---|---|---|---|---|---|---|')
  for choice, p in paths.items():
    memory = f'{p["memory"] / GiB:.2f}' if p['memory'] is not None else 'n/a'
    print(f'| {choice} | {p["flops"] / 1e9:.1f} | {p["bytes"] / 1e9:.1f} | {memory} | '
          f'{p["compile_s"]:.0f} | {statistics.median(p["times"]):.3f} | '
          f'{statistics.median(p["cpu_times"]):.3f} |')
  cpu_p, std_p = paths['cpu'], paths['standard']
  print(f'\nstandard / cpu: time {statistics.median(std_p["times"]) / statistics.median(cpu_p["times"]):.2f}x, '
        f'FLOPs {std_p["flops"] / cpu_p["flops"]:.2f}x, bytes {std_p["bytes"] / cpu_p["bytes"]:.2f}x'
        + (f', memory {std_p["memory"] / cpu_p["memory"]:.2f}x'
           if std_p['memory'] and cpu_p['memory'] else ''))
  return paths


if __name__ == '__main__':
  main()
