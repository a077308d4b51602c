"""The Token Labelling head's variables <-> the official state-dict names.

Official keys (under `cls_head.`): `fc_cls.{weight (K, C), bias}` and
`token_linear.{0,3,6}.{weight (out, in), bias}`; ours: `fc_cls` and `token_linear_{0,3,6}`
with Flax kernels `[in, out]`. A whole DualFormer with this head converts through
`dualformer_jax.convert` (its rules include these keys); these functions convert the head
alone.
"""

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.token_labelling import head as head_lib

PREFIX = 'cls_head.'
TEACHER_PREFIX = 'teacher.'  # the frozen teacher inside official TL checkpoints
_MODULES = ('fc_cls',) + head_lib.TOKEN_LAYERS


def _official_module(name: str) -> str:
  return name if name == 'fc_cls' else name.replace('token_linear_', 'token_linear.')


def head_variables_from_pytorch(state_dict: Mapping[str, Any], prefix: str = PREFIX
                                ) -> dict[str, Any]:
  """`{prefix + 'fc_cls.weight': ..., prefix + 'token_linear.0.weight': ...}` ->
  `{'params': ...}` for `TokenLabellingHead` (other keys are ignored)."""
  params = {}
  for name in _MODULES:
    key = prefix + _official_module(name)
    missing = [f'{key}.{leaf}' for leaf in ('weight', 'bias') if f'{key}.{leaf}' not in state_dict]
    if missing:
      raise KeyError(f'Token Labelling head: {", ".join(missing)} not in the state dict.')
    weight = np.asarray(state_dict[f'{key}.weight'], np.float32)  # [out, in]
    params[name] = {'kernel': jnp.asarray(weight.T),
                    'bias': jnp.asarray(np.asarray(state_dict[f'{key}.bias'], np.float32))}
  return {'params': params}


def head_variables_to_pytorch(variables: Mapping[str, Any], prefix: str = PREFIX
                              ) -> dict[str, np.ndarray]:
  """Inverse of `head_variables_from_pytorch`: float32 arrays under the official names."""
  params = variables.get('params', variables)
  state_dict = {}
  for name in _MODULES:
    key = prefix + _official_module(name)
    kernel = np.asarray(jax.device_get(params[name]['kernel']), np.float32)
    state_dict[f'{key}.weight'] = np.ascontiguousarray(kernel.T)
    state_dict[f'{key}.bias'] = np.asarray(jax.device_get(params[name]['bias']), np.float32)
  return state_dict


def split_teacher(state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """An official TL checkpoint -> (everything but `teacher.*`, the teacher's own keys with
  the prefix removed: `backbone.*`, `cls_head.fc_cls.*`)."""
  rest = {k: v for k, v in state_dict.items() if not k.startswith(TEACHER_PREFIX)}
  teacher = {k[len(TEACHER_PREFIX):]: v for k, v in state_dict.items()
             if k.startswith(TEACHER_PREFIX)}
  return rest, teacher
