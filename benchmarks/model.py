"""Model speed benchmark (any family): clips/s, FLOP/s and utilization of a matmul roofline.

For each variant, dtype and mode (inference forward; train step = forward, backward and
an AdamW update), the benchmark compiles the step ahead of time, runs it once to warm
up, then times `--repeats` runs back to back (as a training loop runs) and reports the
median. The block of runs is bracketed by back-to-back large square matrix multiplies in
the same dtype on the same device (as long as the warm-up run, at most
`--roofline_seconds`, before and after); the roofline is the mean rate of the two, and
the utilization (MFU) is the median over runs of (model FLOP/s) / (roofline). So a busy
machine slows both sides alike and the ratio stays meaningful.

FLOP convention: the model's FLOPs come from `dualformer_jax.flops.count_flops`, which
counts one multiply-add as one FLOP (fvcore, as in the paper). Rates printed here are
2 x multiply-adds per second, the same convention as the roofline (2*m*n*k per matmul),
so `MFU = model FLOP/s / matmul FLOP/s`. A train step counts 3x the forward FLOPs
(forward + backward of activations + backward of weights); element-wise work
(softmax, GELU, norms, the optimizer) is not counted, as usual.

Peak memory: from the compiled executable (`memory_analysis()`: arguments + outputs +
temporaries - donated aliases) on every platform; on GPU/TPU also the device's
`peak_bytes_in_use` (a high-water mark over the whole process so far).

    python benchmarks/model.py --quick                    # tiny, 16x224x224, ~2 min on CPU
    python benchmarks/model.py                            # tiny fp32 on CPU; all on GPU/TPU
    python benchmarks/model.py --variants tiny,small,base --dtypes float32,bfloat16
    python benchmarks/model.py --variants lvt_k400          # another family, its own input
    python benchmarks/model.py --help

Defaults depend on the platform: on CPU `--variants tiny --dtypes float32` (each
Tiny forward at 32x224x224 takes seconds there); on GPU/TPU all three variants in
float32 and bfloat16.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dualformer_jax import host_memory  # noqa: E402

if __name__ == '__main__':  # before JAX starts: huge pages for XLA:CPU's temporaries
  host_memory.reexec_with_huge_pages()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from dualformer_jax import flops as flops_lib  # noqa: E402
from dualformer_jax import models  # noqa: E402

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Square matmul sizes tried for the roofline; the fastest (in FLOP/s) is kept.
ROOFLINE_SIZES = {'cpu': (1024, 2048, 3072), 'gpu': (4096, 8192), 'tpu': (4096, 8192)}
GiB = 1024 ** 3


# ----------------------------------------------------------------------------- helpers

def platform_name() -> str:
  return jax.devices()[0].platform


def device_description() -> str:
  device = jax.devices()[0]
  if device.platform == 'cpu':
    model = 'unknown CPU'
    try:
      with open('/proc/cpuinfo') as f:
        for line in f:
          if line.startswith('model name'):
            model = line.split(':', 1)[1].strip()
            break
    except OSError:
      pass
    return f'{model}, {os.cpu_count()} logical cores visible, {platform.machine()}'
  return f'{device.device_kind} ({device.platform}), {jax.device_count()} device(s)'


def block(tree):
  return jax.block_until_ready(tree)


def compile_fn(fn, *args, donate=()):
  """Ahead-of-time compile; returns (compiled, seconds)."""
  start = time.perf_counter()
  compiled = jax.jit(fn, donate_argnums=donate).lower(*args).compile()
  return compiled, time.perf_counter() - start


def compiled_memory_bytes(compiled) -> int | None:
  """Arguments + outputs + temporaries of one executable, donated aliases counted once."""
  try:
    ma = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if ma is None:
    return None
  return int(ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
             - ma.alias_size_in_bytes)


def device_peak_bytes() -> int | None:
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  if not stats:
    return None
  return stats.get('peak_bytes_in_use')


def xla_flops(compiled) -> float | None:
  """XLA's own FLOP count of an executable (2 per multiply-add), if it reports one."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or 'flops' not in cost:
    return None
  return float(cost['flops'])


# ----------------------------------------------------------------------------- roofline

class Roofline:
  """A large square matmul in one dtype, the size (of `sizes`) that runs fastest here."""

  def __init__(self, dtype, sizes):
    self.dtype = dtype
    self.n, self.compiled, self.a, self.b = None, None, None, None
    self.probe_rate = 0.0
    for n in sizes:
      ka, kb = jax.random.split(jax.random.PRNGKey(n))
      a = jax.random.normal(ka, (n, n), jnp.float32).astype(dtype)
      b = jax.random.normal(kb, (n, n), jnp.float32).astype(dtype)
      compiled, _ = compile_fn(jnp.matmul, a, b)
      block(compiled(a, b))
      times = []
      for _ in range(3):
        start = time.perf_counter()
        block(compiled(a, b))
        times.append(time.perf_counter() - start)
      rate = 2.0 * n ** 3 / min(times)
      if rate > self.probe_rate:
        self.probe_rate, self.n, self.compiled, self.a, self.b = rate, n, compiled, a, b
    self.best_rate = self.probe_rate  # fastest single call seen (the least loaded moment)

  def run(self, seconds: float) -> float:
    """FLOP/s over back-to-back matmuls for about `seconds` (at least one call)."""
    calls, start = 0, time.perf_counter()
    while True:
      call_start = time.perf_counter()
      block(self.compiled(self.a, self.b))
      now = time.perf_counter()
      self.best_rate = max(self.best_rate, 2.0 * self.n ** 3 / (now - call_start))
      calls += 1
      if now - start >= seconds:
        return 2.0 * self.n ** 3 * calls / (now - start)


# ----------------------------------------------------------------------------- model

def random_variables(model, seed: int = 0):
  """Variables of the right shapes and realistic scales, made on the host (no init run)."""
  from dualformer_jax import convert  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  shapes = convert.variable_shapes(model)

  def make(path, leaf):
    name = getattr(path[-1], 'key', str(path[-1]))
    if name == 'num_batches_tracked':
      return jnp.zeros(leaf.shape, leaf.dtype)
    if name in ('scale', 'var'):
      return jnp.ones(leaf.shape, leaf.dtype)
    if name in ('bias', 'mean'):
      return jnp.zeros(leaf.shape, leaf.dtype)
    return jnp.asarray(0.02 * rng.standard_normal(leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(make, shapes)


def make_forward(model):
  def forward(variables, clips):
    return model.apply(variables, clips, train=False)
  return forward


def make_train_step(model, tx):
  def train_step(state, clips, labels):
    params, opt_state, batch_stats, step = state

    def loss_fn(params):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': batch_stats}, clips, train=True,
          mutable=['batch_stats'],
          rngs={'dropout': jax.random.fold_in(jax.random.PRNGKey(0), step)})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, updates.get('batch_stats', batch_stats)  # none in LVT

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state, batch_stats, step + 1), loss
  return train_step


def build_step(model, clip, batch: int, mode: str):
  """`(compiled, run, compile_seconds)`: the forward (`mode='forward'`) or the train step
  (forward, backward, AdamW) compiled on random inputs; `run()` calls it once (the train
  step updating its own state) and returns what to block on."""
  variables = random_variables(model)
  clips = jax.random.normal(jax.random.PRNGKey(1), (batch, *clip, 3), jnp.float32)
  labels = jnp.arange(batch, dtype=jnp.int32) % model.num_classes
  if mode == 'forward':
    compiled, compile_s = compile_fn(make_forward(model), variables, clips)

    def run():
      return compiled(variables, clips)
    return compiled, run, compile_s
  tx = optax.adamw(1e-3, b1=0.9, b2=0.999, weight_decay=0.02)
  params = variables['params']
  state = (params, tx.init(params), variables.get('batch_stats', {}), jnp.zeros((), jnp.int32))
  compiled, compile_s = compile_fn(make_train_step(model, tx), state, clips, labels,
                                   donate=(0,))
  holder = [state]

  def run():
    holder[0], loss = compiled(holder[0], clips, labels)
    return holder[0], loss  # block on the updated state too, not just the loss
  return compiled, run, compile_s


def step_parser(prog: str, description: str) -> argparse.ArgumentParser:
  """The options of a one-step script: --variant, --clip (T,H,W), --batch, --mode."""
  parser = argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--variant', default='tiny', choices=models.all_variants())
  parser.add_argument('--clip', default='16,224,224', type=lambda text: tuple(
      int(v) for v in text.split(',')), help='T,H,W')
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--mode', default='train', choices=('train', 'forward'))
  return parser


def bench_one(variant, clip, batch, dtype_name, mode, repeats, roofline, roofline_seconds,
              profile_dir=None, torch_peer=False):
  """Compile and time one configuration; returns a result dict.

  With `torch_peer` (float32 DualFormer only), the PyTorch eager peer (`torch_peer.py`)
  is timed after our runs, as a block of `repeats` runs bracketed by the same matmuls,
  and `speedup_vs_torch` is (peer median s x its roofline) / (our median s x ours), i.e.
  the ratio of the work each side needs per unit of this machine's matmul speed.
  """
  dtype = DTYPES[dtype_name]
  model = models.create_model(variant, num_classes=400, dtype=dtype)
  macs = flops_lib.count_flops(model, clip).total * batch  # one forward, batch clips
  compiled, run, compile_s = build_step(model, clip, batch, mode)
  flop = (2.0 if mode == 'forward' else 3 * 2.0) * macs

  memory = compiled_memory_bytes(compiled)
  counted_by_xla = xla_flops(compiled)
  start = time.perf_counter()
  out = block(run())  # warm-up (first-run allocation, thread pools)
  warmup_s = time.perf_counter() - start
  out = out[1] if mode == 'train' else out
  if not np.all(np.isfinite(np.asarray(out, np.float32))):
    raise FloatingPointError(f'{variant} {dtype_name} {mode}: non-finite output')

  # The timed runs go back to back, as a training loop runs its steps, bracketed as a
  # block by matmuls (at most `roofline_seconds` before and after) so both see the same
  # machine load. Not run by run: on this VM a step that follows two seconds of anything
  # else is 1.5x slower (freed memory handed back to the hypervisor, NOTES section 14).
  window = min(max(warmup_s, 1.0), roofline_seconds)
  before = roofline.run(window)
  block(run())  # untimed: the first step after the matmuls faults its memory in again
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    block(run())
    times.append(time.perf_counter() - start)
  roof = (before + roofline.run(window)) / 2
  roofs = [roof] * repeats
  ratios = [flop / elapsed / roof for elapsed in times]

  # The peer's runs come after all of ours, in a block of their own: the first XLA step
  # after an eager PyTorch step is slower (the memory PyTorch freed must be faulted in
  # again, NOTES section 14), which no training loop of ours pays.
  peer, peer_note, peer_times, peer_roofs = None, None, [], []
  if torch_peer:
    import torch_peer as peer_lib  # pylint: disable=import-outside-toplevel
    peer_note = peer_lib.available(variant) or (
        None if dtype_name == 'float32' else 'the PyTorch peer runs in float32 only')
    if peer_note is None:
      peer = peer_lib.TorchPeer(variant, clip, batch, mode)
      peer.warm_up()
      before = roofline.run(window)
      peer.run()  # untimed, as ours
      peer_times = [peer.run() for _ in range(repeats)]
      peer_roofs = [(before + roofline.run(window)) / 2] * repeats
  if profile_dir:
    with jax.profiler.trace(os.path.join(profile_dir, f'{variant}_{dtype_name}_{mode}')):
      block(run())

  median_s = statistics.median(times)
  rate = flop / median_s
  return dict(
      variant=variant, clip=list(clip), batch=batch, dtype=dtype_name, mode=mode,
      compile_s=compile_s, warmup_s=warmup_s, times_s=times, median_s=median_s,
      clips_per_s=batch / median_s, model_flop=flop, flop_per_s=rate,
      roofline_flop_per_s=statistics.median(roofs), roofline_samples=roofs,
      roofline_n=roofline.n, roofline_best_flop_per_s=roofline.best_rate,
      mfu=statistics.median(ratios), mfu_samples=ratios, compiled_bytes=memory,
      device_peak_bytes=device_peak_bytes(), xla_flop=counted_by_xla,
      torch_times_s=peer_times or None,
      torch_median_s=statistics.median(peer_times) if peer_times else None,
      # Each block's median scaled by its roofline, so load that drifted between the two
      # blocks cancels.
      speedup_vs_torch=(statistics.median(peer_times) * peer_roofs[0]
                        / (statistics.median(times) * roof) if peer_times else None),
      torch_roofline_flop_per_s=statistics.median(peer_roofs) if peer_roofs else None,
      torch_threads=peer.num_threads if peer else None, torch_note=peer_note)


# ----------------------------------------------------------------------------- report

def format_table(results) -> str:
  header = ('| variant | clip | batch | dtype | mode | compile s | median s | clips/s | '
            'model GFLOP/s | matmul GFLOP/s | MFU | peak memory GiB | vs PyTorch eager |')
  lines = [header, '|' + '---|' * (header.count('|') - 1)]
  for r in results:
    if 'error' in r:
      lines.append(f'| {r["variant"]} | {"x".join(map(str, r["clip"]))} | {r["batch"]} | '
                   f'{r["dtype"]} | {r["mode"]} | skipped: {r["error"]} |||||||')
      continue
    memory = r['compiled_bytes']
    speedup = f'{r["speedup_vs_torch"]:.2f}x' if r.get('speedup_vs_torch') else 'n/a'
    mem = f'{memory / GiB:.2f}' if memory is not None else 'n/a'
    if r.get('device_peak_bytes'):
      mem += f' (device peak {r["device_peak_bytes"] / GiB:.2f})'
    lines.append(
        f'| {r["variant"]} | {"x".join(map(str, r["clip"]))} | {r["batch"]} | {r["dtype"]} | '
        f'{r["mode"]} | {r["compile_s"]:.1f} | {r["median_s"]:.3f} | {r["clips_per_s"]:.3f} | '
        f'{r["flop_per_s"] / 1e9:.1f} | {r["roofline_flop_per_s"] / 1e9:.1f} | '
        f'{100 * r["mfu"]:.1f}% | {mem} | {speedup} |')
  return '\n'.join(lines)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      prog='python benchmarks/model.py', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--variants', default=None,
                      help='comma list of variants of any family, e.g. tiny,small,base or '
                      'lvt_k400 (default: tiny on CPU, tiny,small,base on GPU/TPU)')
  parser.add_argument('--clip', default=None,
                      help='T,H,W of one clip (default: each variant\'s official input)')
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--dtypes', default=None,
                      help='comma list of float32,bfloat16 (default: float32 on CPU, both '
                      'on GPU/TPU)')
  parser.add_argument('--modes', default='forward,train', help='comma list of forward,train')
  parser.add_argument('--repeats', type=int, default=None,
                      help='timed runs per configuration (default 5 on CPU, 20 elsewhere)')
  parser.add_argument('--quick', action='store_true',
                      help='tiny, 16x224x224 (the smallest clip its windows allow), 3 repeats')
  parser.add_argument('--roofline_sizes', default=None,
                      help='comma list of square matmul sizes to try for the roofline')
  parser.add_argument('--roofline_seconds', type=float, default=4.0,
                      help='most seconds of matmuls before and after the timed runs')
  parser.add_argument('--json', default=None, help='also write the results to this file')
  parser.add_argument('--torch', choices=('auto', 'on', 'off'), default='auto',
                      help='time the PyTorch eager peer beside each float32 DualFormer run '
                           '(auto: when torch is installed)')
  parser.add_argument('--profile', default=None,
                      help='write a jax.profiler trace of one extra run per configuration here')
  args = parser.parse_args(argv)
  plat = platform_name()
  accelerator = plat in ('gpu', 'tpu')
  if args.quick:
    args.variants = args.variants or 'tiny'
    args.clip = args.clip or '16,224,224'
    args.repeats = args.repeats or 3
  args.variants = (args.variants or ('tiny,small,base' if accelerator else 'tiny')).split(',')
  args.dtypes = (args.dtypes or ('float32,bfloat16' if accelerator else 'float32')).split(',')
  args.modes = args.modes.split(',')
  args.repeats = args.repeats or (20 if accelerator else 5)
  args.clip = tuple(int(v) for v in args.clip.split(',')) if args.clip else None
  if args.roofline_sizes:
    args.roofline_sizes = tuple(int(v) for v in args.roofline_sizes.split(','))
  else:
    args.roofline_sizes = ROOFLINE_SIZES.get(plat, ROOFLINE_SIZES['gpu'])
  for name, values, allowed in (('variants', args.variants, models.all_variants()),
                                ('dtypes', args.dtypes, DTYPES),
                                ('modes', args.modes, ('forward', 'train'))):
    bad = [v for v in values if v not in allowed]
    if bad:
      parser.error(f'unknown {name}: {bad}')
  return args


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  plat = platform_name()
  print(f'device: {device_description()}')
  clip_text = 'x'.join(map(str, args.clip)) if args.clip else 'each variant\'s own'
  print(f'jax {jax.__version__}, backend {plat}, clip {clip_text}, batch {args.batch}, '
        f'{args.repeats} timed runs per configuration (median reported)')
  if hasattr(os, 'getloadavg'):
    print(f'load average at start: {os.getloadavg()[0]:.2f}')
  print('host memory: transparent huge pages for malloc '
        f'{"on" if host_memory.huge_pages_active() else "off"} (dualformer_jax.host_memory; '
        f'{host_memory.OPT_ENV}=0/1 to choose)')
  print('FLOPs: 2 x multiply-adds (model: dualformer_jax.flops, 1 MAC = 1 official FLOP; '
        'train step = 3 x forward); roofline: 2*n^3 per n x n matmul, same dtype, '
        'before and after each block of model runs\n', flush=True)

  rooflines = {}
  results = []
  for dtype_name in args.dtypes:
    roof = Roofline(DTYPES[dtype_name], args.roofline_sizes)
    rooflines[dtype_name] = roof
    print(f'{dtype_name} matmul roofline: n={roof.n}, {roof.probe_rate / 1e9:.1f} GFLOP/s '
          f'(probe over n in {args.roofline_sizes})', flush=True)
    for variant in args.variants:
      clip = args.clip or models.input_shape(models.create_model(variant))
      for mode in args.modes:
        try:
          r = bench_one(variant, clip, args.batch, dtype_name, mode, args.repeats, roof,
                        args.roofline_seconds, args.profile,
                        torch_peer=args.torch == 'on' or (args.torch == 'auto' and plat == 'cpu'))
        except Exception as e:  # pylint: disable=broad-except
          # Out of memory or similar: record and go on with the other configurations.
          message = f'{type(e).__name__}: {str(e).splitlines()[0][:120]}'
          print(f'  {variant} {dtype_name} {mode}: FAILED {message}', flush=True)
          results.append(dict(variant=variant, clip=list(clip), batch=args.batch,
                              dtype=dtype_name, mode=mode, error=message))
          continue
        results.append(r)
        xla = (f', XLA counts {r["xla_flop"] / r["model_flop"]:.2f}x the model FLOPs'
               if r['xla_flop'] else '')
        print(f'  {variant} {dtype_name} {mode}: median {r["median_s"]:.3f} s '
              f'(runs {", ".join(f"{t:.3f}" for t in r["times_s"])}), '
              f'{r["flop_per_s"] / 1e9:.1f} GFLOP/s vs matmul '
              f'{r["roofline_flop_per_s"] / 1e9:.1f} -> MFU {100 * r["mfu"]:.1f}% '
              f'(per run: {", ".join(f"{100 * m:.0f}" for m in r["mfu_samples"])})'
              f'{xla}', flush=True)
        if r.get('speedup_vs_torch'):
          print(f'    PyTorch eager peer ({r["torch_threads"]} threads): median '
                f'{r["torch_median_s"]:.3f} s (runs {", ".join(f"{p:.3f}" for p in r["torch_times_s"])}) '
                f'vs matmul {r["torch_roofline_flop_per_s"] / 1e9:.1f} -> ours '
                f'{r["speedup_vs_torch"]:.2f}x faster (load-scaled)', flush=True)
        elif r.get('torch_note') and args.torch == 'on':
          print(f'    PyTorch peer skipped: {r["torch_note"]}', flush=True)

  print()
  print(format_table(results))
  print('MFU is the median over runs of (model FLOP/s of the run) / (matmul FLOP/s around it).')
  for dtype_name, roof in rooflines.items():
    print(f'{dtype_name} matmul n={roof.n}: fastest single call {roof.best_rate / 1e9:.1f} '
          'GFLOP/s (the least loaded moment of this run)')
  if hasattr(os, 'getloadavg'):
    print(f'\nload average at end: {os.getloadavg()[0]:.2f}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(dict(device=device_description(), platform=plat, jax=jax.__version__,
                     args={k: v for k, v in vars(args).items()}, results=results), f,
                indent=1)
  return results


if __name__ == '__main__':
  main()
