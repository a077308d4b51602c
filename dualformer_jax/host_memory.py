"""Host memory on CPU runs: transparent huge pages for glibc's malloc.

XLA:CPU allocates each execution's temporaries with one fresh `mmap` and unmaps them
afterwards (1.33 GB for a Tiny 32x224x224 train step). With 4 KiB pages the kernel
faults in and zeroes about 325,000 pages every step, about 15 % of the step on a 2-core
VM (benchmarks/NOTES.md section 14). glibc 2.35+ can advise huge pages for the memory it
maps (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`); with the kernel's transparent huge pages
in `madvise` or `always` mode that cuts the faults about 300-fold. glibc reads tunables
only at process start, so the command-line entry points call `reexec_with_huge_pages()`
first: when it helps, the process replaces itself once with the tunable set.

Nothing here imports JAX (the re-exec must come before any backend starts). It applies
only when no accelerator is visible: on GPU/TPU hosts the step's memory is on the device.
`DUALFORMER_HUGE_PAGES=0` turns it off; `=1` applies it on GPU/TPU hosts too (glibc and
the kernel must still allow it).
"""

from __future__ import annotations

import glob
import os
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'
OPT_ENV = 'DUALFORMER_HUGE_PAGES'
THP_ENABLED = '/sys/kernel/mm/transparent_hugepage/enabled'
ACCELERATOR_DEVICES = ('/dev/accel*', '/dev/vfio/[0-9]*', '/dev/nvidia[0-9]*', '/dev/kfd')


def transparent_huge_page_mode(path: str = THP_ENABLED) -> str | None:
  """The kernel's THP mode ('always', 'madvise' or 'never'), None where unknown."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return None
  for word in text.split():
    if word.startswith('[') and word.endswith(']'):
      return word[1:-1]
  return None


def glibc_version() -> tuple[int, int] | None:
  """(major, minor) of the running glibc, None on other C libraries."""
  try:
    name, version = os.confstr('CS_GNU_LIBC_VERSION').split()
  except (ValueError, OSError, AttributeError):
    return None
  if name != 'glibc':
    return None
  major, minor = version.split('.')[:2]
  return int(major), int(minor)


def accelerator_visible(environ=os.environ, device_patterns=ACCELERATOR_DEVICES) -> bool:
  """Whether JAX may pick a GPU/TPU here: `JAX_PLATFORMS` if set, else device files."""
  platforms = environ.get('JAX_PLATFORMS', '').strip()
  if platforms:
    return any(p.strip() not in ('cpu', '') for p in platforms.split(','))
  return any(glob.glob(pattern) for pattern in device_patterns)


def huge_page_environment(environ, thp_mode, libc, accelerator) -> dict | None:
  """The environment to re-execute with, or None when this process should run as it is."""
  choice = environ.get(OPT_ENV, 'auto').strip().lower()
  tunables = environ.get('GLIBC_TUNABLES', '')
  if choice in ('0', 'off', 'false') or 'glibc.malloc.hugetlb' in tunables:
    return None  # turned off, already set (by us or by the user)
  if libc is None or libc < (2, 35) or thp_mode not in ('always', 'madvise'):
    return None  # glibc cannot advise huge pages, or the kernel will not give them
  if accelerator and choice not in ('1', 'on', 'true'):
    return None
  env = dict(environ)
  env['GLIBC_TUNABLES'] = f'{tunables}:{TUNABLE}' if tunables else TUNABLE
  return env


def huge_pages_active(environ=os.environ) -> bool:
  """Whether this process runs with glibc's huge-page tunable set."""
  return TUNABLE in environ.get('GLIBC_TUNABLES', '')


def reexec_with_huge_pages() -> None:
  """Replace this process by itself with huge pages for malloc, when that helps.

  Call it first thing in a command's `__main__`; returns normally when nothing is to do,
  and always in an interactive session (IPython, Jupyter, Colab), which it must not
  replace.
  """
  if 'IPython' in sys.modules or not hasattr(sys.modules.get('__main__'), '__file__'):
    return
  env = huge_page_environment(os.environ, transparent_huge_page_mode(), glibc_version(),
                              accelerator_visible())
  if env is None:
    return
  argv = list(getattr(sys, 'orig_argv', None) or [sys.executable, *sys.argv])
  argv[0] = sys.executable
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, argv, env)
