"""One error line per user mistake at every command line.

`run_main(fn)` calls `fn(argv)`; an exception the user can fix (`UserError` and the
library's own kinds: `PredictError`, `ConversionError`, `UnknownVariantError`,
`VideoDecodeError`, a missing file) is printed as `error: <message>` on stderr with exit
status 1 and no traceback. Anything else is an internal failure and keeps its traceback.
`--verbose` (anywhere on the command line) or `DUALFORMER_JAX_VERBOSE=1` shows the full
traceback of user errors too.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

from dualformer_jax.errors import ConfigError, UserError  # noqa: F401  (re-exported)

# Matched by class name so that this module imports nothing heavy (JAX, TFDS).
_LIBRARY_USER_ERRORS = frozenset({
    'UserError', 'ConfigError', 'PredictError', 'ConversionError', 'UnknownVariantError',
    'VideoDecodeError', 'NonFiniteLossError'})
_OS_USER_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                   PermissionError, FileExistsError)


def is_user_error(e: BaseException) -> bool:
  return (isinstance(e, _OS_USER_ERRORS)
          or any(c.__name__ in _LIBRARY_USER_ERRORS for c in type(e).__mro__))


def verbose_requested(argv: Sequence[str]) -> bool:
  return '--verbose' in argv or os.environ.get('DUALFORMER_JAX_VERBOSE', '') not in ('', '0')


def message(e: BaseException) -> str:
  """The one-line form: `error: ...` (OS errors give their path and reason)."""
  if isinstance(e, OSError) and e.filename is not None and e.strerror:
    text = f'{e.filename}: {e.strerror}'
  else:
    text = str(e).strip().strip('"\'') or type(e).__name__
    text = text.split('\n\n')[0]  # the first paragraph; --verbose shows the rest
  text = ' '.join(text.split())
  return text if text.startswith('error: ') else f'error: {text}'


def fail(text: str, code: int = 1) -> 'NoReturn':  # noqa: F821
  print(text if text.startswith('error: ') else f'error: {text}', file=sys.stderr)
  sys.exit(code)


def run_main(fn: Callable[[list[str]], int | None],
             argv: Sequence[str] | None = None) -> int:
  """Runs `fn(argv)` and returns its exit status, user errors as one line on stderr."""
  argv = list(sys.argv[1:] if argv is None else argv)
  verbose = verbose_requested(argv)
  argv = [a for a in argv if a != '--verbose']
  try:
    return int(fn(argv) or 0)
  except KeyboardInterrupt:
    print('error: interrupted', file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    if not is_user_error(e):
      raise
    if verbose:
      traceback.print_exc()
    print(message(e), file=sys.stderr)
    return 1


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage errors are one `error: ...` line (exit 2) naming `--help`."""

  def error(self, message):  # pylint: disable=signature-differs
    print(f'error: {message} (see {self.prog} --help)', file=sys.stderr)
    sys.exit(2)
