"""How LG-MSA, LVT's linear attention and full attention scale with the number of frames.

One attention layer of width C (default 256 with 8 heads: DualFormer-Tiny's stage 2) on
a token grid (T, 14, 14), T = 8, 16, 32, 64 (the grid after patch embedding, e.g. a
2T-frame clip at 224x224 in stage 2). For each T the benchmark times, after compilation
(median of `--repeats`), and reports the compiled peak memory of:

* LG-MSA: one LW-MSA (windows (8, 7, 7)) followed by one GP-MSA, as in a pair of
  DualFormer blocks (norms and MLPs left out, same for both sides). The pyramid is sized
  the way the official model sizes it: the model is built for the clip
  (`video_size`), the fine level pools to a fixed `fine_pysize` (8, 7, 7), so the fine
  kernel grows with T and there are 392 keys at every T;
* LG-MSA, fixed kernel: the same, but with the fine kernel of a model built for the
  shortest clip (here (1, 2, 2) at T = 8), run on longer clips: the keys grow with T;
* full attention: every token attends to every token (GP-MSA without pooling: the same
  q, kv and proj projections, one global softmax);
* LVT linear attention: the two attentions of an LVT block (`models/lvt/attention.py`),
  over time with the 8-neighbour spatial shift of k and v, then over space with the
  temporal shift (`shift_div` 8, 8-frame segments, as LVT-K400), each with its
  feature-fixation gates (MLPs and norms left out). Linear attention forms no query-key
  logits: each query reads a per-sequence `e x e` summary, so its "keys per query" column
  is the length of the two sequences it summarizes (T + H*W). At LVT-K400's widths run
  `--width 512 --heads 8 --grid 17,17` (16 frames at 224 x 224 give a (16, 17, 17) grid).

The growth exponent is the least-squares slope of log(time) (or log(memory)) against
log(T): 1 is linear, 2 quadratic. FLOPs (1 multiply-add = 2 FLOPs here) are counted
analytically for the projections and attention matrix multiplies.

Fairness notes: LG-MSA and full attention use the same code paths
(`dualformer_jax.models.dualformer.attention`), LVT its own module; all four the same
dtype, width and grid. On CPU our attention runs in cache-sized chunks of queries, so even full
attention never holds its N x N logits at once: its memory stays near-linear and its
time shows the quadratic growth; the column `N^2 logits` gives what an unchunked
implementation (as on GPU/TPU) would hold at once.

    python benchmarks/attention_scaling.py                  # forward, T = 8,16,32,64
    python benchmarks/attention_scaling.py --mode train     # forward + backward
    python benchmarks/attention_scaling.py --frames 8,16,32 --grid 28,28 --width 128 --heads 4
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from dualformer_jax.models.dualformer import attention  # noqa: E402
from dualformer_jax.models.lvt import attention as lvt_attention  # noqa: E402
from dualformer_jax.models.lvt import shifts as lvt_shifts  # noqa: E402
import model as model_bench  # noqa: E402  (benchmarks/model.py)

WINDOW = (8, 7, 7)
FINE_PYSIZE = (8, 7, 7)
GiB = 1024 ** 3


def pyramid_kernel(grid, pysize=FINE_PYSIZE):
  return tuple(max(1, g // p) for g, p in zip(grid, pysize))


class Pair:
  """LW-MSA then GP-MSA (or full attention) as one function of `[b, t, h, w, c]`."""

  def __init__(self, heads, fine_kernel, with_local=True, dtype=jnp.float32):
    self.local = attention.LocalWindowAttention(heads, WINDOW, dtype=dtype) if with_local else None
    self.glob = attention.GlobalPyramidAttention(heads, fine_kernel, None, dtype=dtype)

  def init(self, key, x):
    k1, k2 = jax.random.split(key)
    params = {'global': self.glob.init(k2, x, False)}
    if self.local is not None:
      params['local'] = self.local.init(k1, x, False)
    return params

  def apply(self, params, x):
    if self.local is not None:
      x = self.local.apply(params['local'], x, False)
    return self.glob.apply(params['global'], x, False)


class LinearPair:
  """LVT's temporal then spatial linear attention as one function of `[b, t, h, w, c]`."""

  def __init__(self, heads, dtype=jnp.float32):
    temporal_shift = functools.partial(lvt_shifts.temporal_shift, shift_div=8, num_segments=8)
    spatial_shift = functools.partial(lvt_shifts.spatial_shift, shift_size=1)
    self.time = lvt_attention.LinearAttention(heads, 'time', spatial_shift, dtype=dtype)
    self.space = lvt_attention.LinearAttention(heads, 'space', temporal_shift, dtype=dtype)

  def init(self, key, x):
    k1, k2 = jax.random.split(key)
    return {'time': self.time.init(k1, x, False), 'space': self.space.init(k2, x, False)}

  def apply(self, params, x):
    return self.space.apply(params['space'], self.time.apply(params['time'], x, False), False)


def flops(kind, grid, width, fine_kernel, heads=1):
  """2 x multiply-adds of projections and attention matrix multiplies."""
  n = int(np.prod(grid))
  c = width
  macs = 0
  if kind == 'lvt':
    e = c // heads
    # Per attention: qkv and proj (4c^2), q and k gates (2 x 3e -> e per head), k'^T v
    # and q' (k'^T v) (2 e^2 per head), q' . sum k' (e per head).
    per_token = 4 * c * c + 6 * c * e + 2 * c * e + c
    return 2 * 2 * n * per_token, grid[0] + grid[1] * grid[2]
  if kind != 'full':
    window = int(np.prod(WINDOW))
    macs += 4 * n * c * c + 2 * n * window * c  # LW: qkv, proj; q @ k, weights @ v
  keys = int(np.prod([g // k for g, k in zip(grid, fine_kernel)])) if kind != 'full' else n
  macs += 2 * n * c * c + 2 * keys * c * c + 2 * n * keys * c  # GP: q, proj, kv; attention
  return 2 * macs, keys


def bench(kind, frames, grid_hw, width, heads, mode, repeats, dtype, fixed_kernel):
  grid = (frames, *grid_hw)
  fine_kernel, with_local = (1, 1, 1), False
  if kind == 'lvt':
    pair = LinearPair(heads, dtype)
  elif kind == 'full':
    fine_kernel, with_local = (1, 1, 1), False
  elif kind == 'lg':
    fine_kernel, with_local = pyramid_kernel(grid), True
  else:  # lg_fixed
    fine_kernel, with_local = fixed_kernel, True
  if kind != 'lvt':
    pair = Pair(heads, fine_kernel, with_local, dtype)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, *grid, width), jnp.float32).astype(dtype)
  params = jax.jit(pair.init)(jax.random.PRNGKey(1), x)
  if mode == 'forward':
    fn = pair.apply
  else:
    def fn(params, x):
      loss = lambda p, x: jnp.sum(pair.apply(p, x).astype(jnp.float32) ** 2)
      return jax.grad(loss, argnums=(0, 1))(params, x)
  compiled, compile_s = model_bench.compile_fn(fn, params, x)
  memory = model_bench.compiled_memory_bytes(compiled)
  jax.block_until_ready(compiled(params, x))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, x))
    times.append(time.perf_counter() - start)
  flop, keys = flops(kind, grid, width, fine_kernel, heads)
  flop *= 3 if mode == 'train' else 1
  n = int(np.prod(grid))
  return dict(kind=kind, frames=frames, tokens=n, keys=keys, fine_kernel=list(fine_kernel),
              median_s=statistics.median(times), times_s=times, compile_s=compile_s,
              memory_bytes=memory, flop=flop,
              logit_bytes=0 if kind == 'lvt' else heads * n * keys * 4)


def slope(xs, ys):
  """Least-squares slope of log(ys) against log(xs)."""
  if len(xs) < 2 or any(y is None or y <= 0 for y in ys):
    return float('nan')
  return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


KIND_NAMES = {'lg': 'LG-MSA (official pyramid sizing)', 'lg_fixed': 'LG-MSA (fixed kernel)',
              'full': 'full space-time attention', 'lvt': 'LVT linear attention (time + space)'}


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python benchmarks/attention_scaling.py',
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--frames', default='8,16,32,64', help='token-grid T values')
  parser.add_argument('--grid', default='14,14', help='token-grid H,W')
  parser.add_argument('--width', type=int, default=256)
  parser.add_argument('--heads', type=int, default=8)
  parser.add_argument('--mode', default='forward', choices=('forward', 'train'))
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--dtype', default='float32', choices=sorted(model_bench.DTYPES))
  parser.add_argument('--kinds', default='lg,lg_fixed,full,lvt',
                      help='comma list of lg, lg_fixed, full, lvt')
  parser.add_argument('--json', default=None)
  args = parser.parse_args(argv)
  frames = [int(v) for v in args.frames.split(',')]
  grid_hw = tuple(int(v) for v in args.grid.split(','))
  kinds = args.kinds.split(',')
  fixed_kernel = pyramid_kernel((min(frames), *grid_hw))
  dtype = model_bench.DTYPES[args.dtype]

  print(f'device: {model_bench.device_description()}; jax {jax.__version__}')
  if hasattr(os, 'getloadavg'):
    print(f'load average at start: {os.getloadavg()[0]:.2f}')
  print(f'{args.mode}, {args.dtype}, width {args.width}, {args.heads} heads, grid (T, '
        f'{grid_hw[0]}, {grid_hw[1]}), LW windows {WINDOW}, fine pyramid {FINE_PYSIZE} '
        f'(fixed kernel: {fixed_kernel}), median of {args.repeats}\n', flush=True)
  results = []
  for kind in kinds:
    for t in frames:
      try:
        r = bench(kind, t, grid_hw, args.width, args.heads, args.mode, args.repeats, dtype,
                  fixed_kernel)
      except Exception as e:  # pylint: disable=broad-except
        message = f'{type(e).__name__}: {str(e).splitlines()[0][:100]}'
        print(f'  {kind} T={t}: FAILED {message}', flush=True)
        results.append(dict(kind=kind, frames=t, error=message))
        continue
      results.append(r)
      print(f'  {KIND_NAMES[kind]}, T={t}: {r["tokens"]} tokens, {r["keys"]} keys, '
            f'{r["median_s"] * 1e3:.1f} ms', flush=True)

  print()
  header = ('| attention | T | tokens | keys per query | median ms | GFLOP | GFLOP/s | '
            'compiled memory MiB | global logits MiB, unchunked |')
  lines = [header, '|' + '---|' * (header.count('|') - 1)]
  for r in results:
    if 'error' in r:
      lines.append(f'| {KIND_NAMES[r["kind"]]} | {r["frames"]} | skipped: {r["error"]} |||||||')
      continue
    mem = f'{r["memory_bytes"] / 2**20:.0f}' if r['memory_bytes'] is not None else 'n/a'
    lines.append(
        f'| {KIND_NAMES[r["kind"]]} | {r["frames"]} | {r["tokens"]} | {r["keys"]} | '
        f'{r["median_s"] * 1e3:.1f} | {r["flop"] / 1e9:.1f} | '
        f'{r["flop"] / r["median_s"] / 1e9:.1f} | {mem} | {r["logit_bytes"] / 2**20:.0f} |')
  print('\n'.join(lines))

  print('\nGrowth exponent with T (log-log least-squares slope; 1 = linear, 2 = quadratic):')
  print('| attention | time | FLOPs | compiled memory | time, last two T |')
  print('|---|---|---|---|---|')
  for kind in kinds:
    ok = [r for r in results if r['kind'] == kind and 'error' not in r]
    ts = [r['frames'] for r in ok]
    time_slope = slope(ts, [r['median_s'] for r in ok])
    last = slope(ts[-2:], [r['median_s'] for r in ok[-2:]])
    print(f'| {KIND_NAMES[kind]} | {time_slope:.2f} | '
          f'{slope(ts, [r["flop"] for r in ok]):.2f} | '
          f'{slope(ts, [r["memory_bytes"] for r in ok]):.2f} | {last:.2f} |')
  lg = {r['frames']: r for r in results if r['kind'] == 'lg' and 'error' not in r}
  full = {r['frames']: r for r in results if r['kind'] == 'full' and 'error' not in r}
  common = sorted(set(lg) & set(full))
  if common:
    print('\nfull attention / LG-MSA time: ' + ', '.join(
        f'T={t}: {full[t]["median_s"] / lg[t]["median_s"]:.1f}x' for t in common))
  lvt = {r['frames']: r for r in results if r['kind'] == 'lvt' and 'error' not in r}
  common = sorted(set(lg) & set(lvt))
  if common:
    print('LVT linear attention / LG-MSA time: ' + ', '.join(
        f'T={t}: {lvt[t]["median_s"] / lg[t]["median_s"]:.2f}x' for t in common))
  if hasattr(os, 'getloadavg'):
    print(f'load average at end: {os.getloadavg()[0]:.2f}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(dict(device=model_bench.device_description(), jax=jax.__version__,
                     args=vars(args), results=results), f, indent=1)
  return results


if __name__ == '__main__':
  main()
