"""Which formulation of the hot layers a trace uses: the CPU one or the standard one.

Some layers have a second formulation written for XLA:CPU (benchmarks/NOTES.md has the
profiles behind each): attention split into cache-sized chunks in a rematerialized loop,
and hand-written VJPs for Dense (which operand the kernel gradient transposes), the
3x3x3 depthwise convolution (kernel gradient one tap at a time) and GELU (derivative kept
from the forward). On GPU and TPU the standard formulations are used instead (one
batched attention, autodiff, a grouped convolution), which is what those compilers are
tuned for. Both compute the same function (the tests hold both to the official golden
and to PyTorch's gradients).

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
