"""Which formulation of the hot layers a trace uses: the CPU one or the standard one.

Some layers have a second formulation written for XLA:CPU (benchmarks/NOTES.md has the
profiles behind each): attention and large MLPs split into cache-sized chunks in a
rematerialized loop, and hand-written VJPs for Dense (which operand the kernel gradient
transposes), the 3x3x3 depthwise convolution (kernel gradient one tap at a time) and GELU
(derivative kept from the forward). On GPU and TPU the standard formulations are used
instead (one batched attention and MLP, autodiff, a grouped convolution), which is what
those compilers are tuned for. Both compute the same function (the tests hold both to
the official golden and to PyTorch's gradients).

The choice is made when a function is traced:

* `DUALFORMER_JAX_FORMULATIONS=auto` (default): CPU formulations on the CPU backend only;
* `=cpu` / `=standard`: force one everywhere;
* `with formulations.use('standard'): ...` overrides both, for the current thread
  (tests and `benchmarks/backend_paths.py` compile both paths side by side).
"""

from __future__ import annotations

import contextlib
import os
import threading

import jax

CHOICES = ('auto', 'cpu', 'standard')
ENV_VAR = 'DUALFORMER_JAX_FORMULATIONS'
_local = threading.local()


def _requested() -> str:
  forced = getattr(_local, 'forced', None)
  if forced is not None:
    return forced
  value = os.environ.get(ENV_VAR, 'auto').strip().lower() or 'auto'
  if value not in CHOICES:
    raise ValueError(f'{ENV_VAR}={value!r}: choose one of {", ".join(CHOICES)}.')
  return value


def cpu() -> bool:
  """True when the layers being traced use their CPU formulations."""
  requested = _requested()
  if requested == 'auto':
    return jax.default_backend() == 'cpu'
  return requested == 'cpu'


def active() -> str:
  """'cpu' or 'standard': the formulation a trace started now would use."""
  return 'cpu' if cpu() else 'standard'


@contextlib.contextmanager
def use(choice: str):
  """Traces inside this block use `choice` ('cpu', 'standard' or 'auto')."""
  if choice not in CHOICES:
    raise ValueError(f'formulation {choice!r}: choose one of {", ".join(CHOICES)}.')
  previous = getattr(_local, 'forced', None)
  _local.forced = choice
  try:
    yield
  finally:
    _local.forced = previous


def chunk_count(items: int, bytes_per_item: int, budget: int | None,
                min_per_chunk: int = 1) -> int:
  """How many equal chunks to split `items` into so each chunk's bytes fit `budget`.

  A chunk holds at least `min_per_chunk` items when `items` allows it.
  """
  if budget is None or items * bytes_per_item <= budget:
    return 1
  per_chunk = min(items, max(1, min_per_chunk, budget // bytes_per_item))
  while items % per_chunk:  # the largest divisor of `items` not above the budget
    per_chunk -= 1
  return items // per_chunk


def map_chunks(fn, xs: tuple[jax.Array, ...], num_chunks: int) -> jax.Array:
  """`fn(*xs)` computed over `num_chunks` slices of the leading axis of every `xs`.

  With more than one chunk it is a loop (`lax.map`) whose body is rematerialized: the
  backward pass recomputes each chunk in cache (an attention's softmax weights, an MLP's
  hidden activations) instead of reading them back from memory.
  """
  if num_chunks == 1:
    return fn(*xs)
  split = lambda t: t.reshape(num_chunks, t.shape[0] // num_chunks, *t.shape[1:])
  body = jax.checkpoint(lambda args: fn(*args))
  out = jax.lax.map(body, tuple(split(t) for t in xs))
  return out.reshape(-1, *out.shape[2:])
