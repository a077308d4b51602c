"""Exceptions for mistakes a user can fix (bad paths, configs, inputs).

The command lines (`dualformer_jax.cli.errors.run_main`) print these as one line,
`error: <message>`, and exit 1; anything else still shows its traceback.
"""


class UserError(Exception):
  """A mistake the user can fix; the message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work (also a ValueError, for existing callers)."""
