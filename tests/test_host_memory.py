"""Huge pages for glibc's malloc on CPU runs: when the entry points re-execute, and that
the re-executed process really faults in XLA:CPU's buffers in huge pages."""

import os
import subprocess
import sys
import textwrap

import pytest

from dualformer_jax import host_memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLIBC = (2, 36)


@pytest.mark.parametrize('environ, thp, libc, accelerator, expected', [
    ({}, 'madvise', GLIBC, False, 'glibc.malloc.hugetlb=1'),
    ({}, 'always', GLIBC, False, 'glibc.malloc.hugetlb=1'),
    ({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, 'madvise', GLIBC, False,
     'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'),   # the user's tunables are kept
    ({}, 'never', GLIBC, False, None),                     # the kernel gives none
    ({}, None, GLIBC, False, None),                        # no THP in this kernel
    ({}, 'madvise', (2, 34), False, None),                 # glibc without the tunable
    ({}, 'madvise', None, False, None),                    # musl and others
    ({}, 'madvise', GLIBC, True, None),                    # GPU/TPU host: left alone
    ({'DUALFORMER_HUGE_PAGES': '1'}, 'madvise', GLIBC, True, 'glibc.malloc.hugetlb=1'),
    ({'DUALFORMER_HUGE_PAGES': '0'}, 'madvise', GLIBC, False, None),
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, 'madvise', GLIBC, False, None),  # user's
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}, 'madvise', GLIBC, False, None),  # done
])
def test_when_to_reexecute(environ, thp, libc, accelerator, expected):
  env = host_memory.huge_page_environment(environ, thp, libc, accelerator)
  assert (env and env['GLIBC_TUNABLES']) == expected
  if env:
    assert {k: v for k, v in env.items() if k != 'GLIBC_TUNABLES'} == {
        k: v for k, v in environ.items() if k != 'GLIBC_TUNABLES'}


def test_mode_and_accelerator_detection(tmp_path):
  thp = tmp_path / 'enabled'
  thp.write_text('always [madvise] never\n')
  assert host_memory.transparent_huge_page_mode(str(thp)) == 'madvise'
  assert host_memory.transparent_huge_page_mode(str(tmp_path / 'missing')) is None
  (tmp_path / 'accel0').write_text('')
  on_disk = (str(tmp_path / 'accel*'),)
  assert host_memory.accelerator_visible({}, on_disk)
  assert not host_memory.accelerator_visible({'JAX_PLATFORMS': 'cpu'}, on_disk)
  assert host_memory.accelerator_visible({'JAX_PLATFORMS': 'tpu,cpu'}, ())
  assert not host_memory.accelerator_visible({}, (str(tmp_path / 'nvidia[0-9]*'),))


def test_an_interactive_session_is_never_replaced(monkeypatch):
  calls = []
  monkeypatch.setattr(host_memory.os, 'execve', lambda *a: calls.append(a))
  monkeypatch.setattr(host_memory, 'huge_page_environment', lambda *a: {'GLIBC_TUNABLES': 'x'})
  monkeypatch.setitem(host_memory.sys.modules, 'IPython', object())
  host_memory.reexec_with_huge_pages()
  assert not calls
  monkeypatch.delitem(host_memory.sys.modules, 'IPython')
  host_memory.reexec_with_huge_pages()   # pytest's own __main__ is a file: it would restart
  assert len(calls) == 1 and calls[0][2] == {'GLIBC_TUNABLES': 'x'}


CHILD = textwrap.dedent('''
    import os, resource, sys
    sys.path.insert(0, {repo!r})
    from dualformer_jax import host_memory
    host_memory.reexec_with_huge_pages()
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x: x * 2.0)   # each call: a fresh 256 MiB output buffer
    x = jnp.ones((64, 1 << 20), jnp.float32)
    f(x).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(sys.argv[1:], host_memory.huge_pages_active(), faults)
''')


def _run_child(tmp_path, **env):
  script = tmp_path / 'child.py'
  script.write_text(CHILD.format(repo=REPO))
  environ = {k: v for k, v in os.environ.items() if k not in ('GLIBC_TUNABLES',)}
  environ.update(JAX_PLATFORMS='cpu', **env)
  out = subprocess.run([sys.executable, str(script), '--flag', 'value'], env=environ,
                       capture_output=True, text=True, timeout=300, check=True).stdout
  argv, active, faults = out.strip().rsplit(' ', 2)
  return argv, active == 'True', int(faults)


@pytest.mark.skipif(host_memory.huge_page_environment(
    {}, host_memory.transparent_huge_page_mode(), host_memory.glibc_version(), False) is None,
    reason='this host cannot advise transparent huge pages (THP never, or an old glibc)')
def test_reexecuted_process_faults_in_huge_pages(tmp_path):
  argv, active, faults = _run_child(tmp_path)
  assert argv == "['--flag', 'value']" and active   # the same command line, re-executed
  _, active_off, faults_off = _run_child(tmp_path, DUALFORMER_HUGE_PAGES='0')
  assert not active_off
  # The output buffer is 256 MiB: 65,536 small pages when faulted in
  # 4 KiB at a time, 128 in 2 MiB huge pages (the kernel may fall back for a few).
  assert faults_off > 30_000, faults_off
  assert faults < faults_off / 20, (faults, faults_off)
