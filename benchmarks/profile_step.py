"""Where a step's time goes: a JAX profiler trace summed per layer kind and phase.

Compiles one train step (forward, backward, AdamW; as in `benchmarks/model.py`) or a
forward pass, traces `--steps` runs with `jax.profiler`, and attributes each XLA thunk's
*exclusive* time (nested loop bodies subtracted from their loop) to the HLO instruction
it ran, whose `op_name` metadata names the layer (`.../block_2_1/mlp/fc1/dot_general`)
and the phase (`jvp(...)`: forward, `transpose(jvp(...))`: backward, else: optimizer).
Thunks of different threads overlap in time (XLA:CPU runs independent thunks
concurrently), so the table's times add up to more than the wall time; the shares are
what to read.

    python benchmarks/profile_step.py --variant tiny --clip 16,224,224
    python benchmarks/profile_step.py --variant tiny --clip 16,224,224 --mode forward --top 30
    python benchmarks/profile_step.py --variant mobile_former_3d_xs --clip 8,64,64 --batch 16
    python benchmarks/profile_step.py --variant lvt_nano --clip 8,64,64 --batch 16

The layer kinds come from the model's family (`Family.profile_categories`: regexes on the
layer path), so every family's step is broken down in its own terms.

Model FLOPs per kind come from `dualformer_jax.flops` (backward = 2 x forward), so the
rate of the dense layers or of the attention core can be set against the matmul
roofline that `benchmarks/model.py` measures.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dualformer_jax import host_memory  # noqa: E402

if __name__ == '__main__':  # before JAX starts: profile the step as train.py runs it
  host_memory.reexec_with_huge_pages()

import jax  # noqa: E402

import model as bench  # noqa: E402  (benchmarks/model.py)
from dualformer_jax import flops as flops_lib  # noqa: E402
from dualformer_jax import models  # noqa: E402

SKIP = ('ThunkExecutor', 'ThreadpoolListener', 'end: ', '$', 'PjitFunction', 'Wait for',
        'PythonRefManager')


def instruction_op_names(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> its op_name metadata (fusions carry their root's)."""
  names = {}
  pattern = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?op_name="([^"]*)"')
  for line in hlo_text.splitlines():
    m = pattern.match(line)
    if m:
      names.setdefault(m.group(1), m.group(2))
  return names


def phase_of(op_name: str) -> str:
  if 'transpose(' in op_name:
    return 'backward'
  if 'jvp(' in op_name or '/backbone/' in op_name or '/head/' in op_name:
    return 'forward'
  return 'optimizer / other'


def category_of(op_name: str, categories) -> str:
  """The first `(name, regex)` of the family's `profile_categories` matching `op_name`."""
  for name, pattern in categories:
    if re.search(pattern, op_name):
      return name
  return 'optimizer / other' if phase_of(op_name) == 'optimizer / other' else 'other'


def exclusive_times(trace_path: str) -> dict[str, float]:
  """Thunk name -> summed exclusive seconds over the trace (all threads)."""
  data = jax.profiler.ProfileData.from_file(trace_path)
  totals = collections.defaultdict(float)
  for plane in data.planes:
    for line in plane.lines:
      events = sorted(((e.start_ns, e.duration_ns, e.name) for e in line.events
                       if not e.name.startswith(SKIP)), key=lambda e: (e[0], -e[1]))
      stack = []  # [end_ns, name, exclusive_ns]
      for start, duration, name in events:
        while stack and stack[-1][0] <= start:
          end, done, excl = stack.pop()
          totals[done] += excl / 1e9
        if stack:
          stack[-1][2] -= duration  # nested in the enclosing thunk (a loop body)
        stack.append([start + duration, name, duration])
      for end, done, excl in stack:
        totals[done] += excl / 1e9
  return totals


def profile(variant: str, clip, batch: int, mode: str, steps: int):
  model = models.create_model(variant, num_classes=400)
  compiled, run, _ = bench.build_step(model, clip, batch, mode)
  bench.block(run())  # warm-up
  directory = tempfile.mkdtemp(prefix='profile_step_')
  start = time.perf_counter()
  with jax.profiler.trace(directory):
    for _ in range(steps):
      bench.block(run())
  wall = (time.perf_counter() - start) / steps
  trace = sorted(glob.glob(os.path.join(directory, '**', '*.xplane.pb'), recursive=True))[-1]
  op_names = instruction_op_names(compiled.as_text())
  categories = models.family_of(model).profile_categories
  by_key = collections.defaultdict(float)
  thunks = []  # (seconds per step, thunk, op_name)
  unmatched = 0.0
  for thunk, seconds in exclusive_times(trace).items():
    op_name = op_names.get(thunk)
    if op_name is None:
      unmatched += seconds
      continue
    by_key[(category_of(op_name, categories), phase_of(op_name))] += seconds / steps
    thunks.append((seconds / steps, thunk, op_name))
  flop_kinds = flops_lib.count_flops(model, clip).by_kind
  return dict(wall=wall, by_key=by_key, unmatched=unmatched / steps, trace=trace,
              thunks=sorted(thunks, reverse=True),
              flop_kinds={k: v * batch for k, v in flop_kinds.items()})


def report(result, top_thunks: int = 0) -> str:
  by_key, wall = result['by_key'], result['wall']
  total = sum(by_key.values()) + result['unmatched']
  phases = ('forward', 'backward', 'optimizer / other')
  categories = sorted({c for c, _ in by_key}, key=lambda c: -sum(
      by_key.get((c, p), 0.0) for p in phases))
  lines = [f'wall time per step {wall * 1e3:.0f} ms; thunk time {total * 1e3:.0f} ms '
           f'(threads overlap); unattributed {result["unmatched"] * 1e3:.0f} ms',
           '', '| category | forward ms | backward ms | optimizer ms | share | bwd/fwd |',
           '|---|---|---|---|---|---|']
  for c in categories:
    f, b, o = (by_key.get((c, p), 0.0) for p in phases)
    ratio = f'{b / f:.2f}' if f > 0 else '-'
    lines.append(f'| {c} | {f * 1e3:.0f} | {b * 1e3:.0f} | {o * 1e3:.0f} | '
                 f'{100 * (f + b + o) / total:.1f} % | {ratio} |')
  fwd = sum(by_key.get((c, 'forward'), 0.0) for c in categories)
  bwd = sum(by_key.get((c, 'backward'), 0.0) for c in categories)
  lines.append(f'| all | {fwd * 1e3:.0f} | {bwd * 1e3:.0f} | '
               f'{sum(by_key.get((c, "optimizer / other"), 0.0) for c in categories) * 1e3:.0f}'
               f' | 100 % | {bwd / max(fwd, 1e-12):.2f} |')
  kinds = result['flop_kinds']
  lines.append('')
  lines.append('Model multiply-adds per forward: ' + ', '.join(
      f'{k} {v / 1e9:.2f} G' for k, v in kinds.items()))
  if top_thunks:
    lines += ['', f'The {top_thunks} costliest thunks (ms per step, phase, layer path):']
    for seconds, thunk, op_name in result['thunks'][:top_thunks]:
      path = op_name.split('/', 1)[-1]
      lines.append(f'{seconds * 1e3:8.1f}  {phase_of(op_name):<9}  {thunk}  {path[-100:]}')
  return '\n'.join(lines)


def main(argv=None):
  parser = bench.step_parser('python benchmarks/profile_step.py', __doc__)
  parser.add_argument('--steps', type=int, default=2, help='traced runs (after a warm-up)')
  parser.add_argument('--top', type=int, default=0,
                      help='also list the N costliest thunks with their layer paths')
  args = parser.parse_args(argv)
  clip = args.clip
  result = profile(args.variant, clip, args.batch, args.mode, args.steps)
  print(f'{args.variant} {args.mode} {"x".join(map(str, clip))} batch {args.batch}, '
        f'jax {jax.__version__} {jax.devices()[0].device_kind}, '
        f'load average {os.getloadavg()[0]:.1f}')
  print(report(result, args.top))
  return result


if __name__ == '__main__':
  main()
