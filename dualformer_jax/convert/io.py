"""Reading and writing official-format state dicts: `.pth` (PyTorch) and `.safetensors`.

PyTorch is imported only when a `.pth` file is read or written.
"""

import os
from typing import Any, Mapping

import numpy as np

from dualformer_jax.errors import UserError

StateDict = dict[str, np.ndarray]


class CheckpointReadError(UserError, ValueError):
  """A checkpoint file that cannot be read: damaged, truncated, or not a checkpoint."""


def _require_torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        'Reading or writing .pth files needs PyTorch (CPU build is enough): '
        '`pip install torch==2.13.0`. Alternatively use a .safetensors file.') from e
  return torch


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, 'detach'):  # torch.Tensor
    return value.detach().cpu().numpy()
  return np.asarray(value)


# Where training frameworks keep the weights in their checkpoint files: mmcv
# (`state_dict`), SlowFast (`model_state`), many others (`model`).
WRAPPER_KEYS = ('state_dict', 'model_state', 'model')


def unwrap_checkpoint(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
  """The state dict inside an mmcv / SlowFast / generic checkpoint, or a bare state dict."""
  for key in WRAPPER_KEYS:
    if key in checkpoint and isinstance(checkpoint[key], Mapping):
      return checkpoint[key]
  return checkpoint


def load_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> StateDict:
  """A `.pth` / `.safetensors` path, or a mapping of arrays -> `{key: np.ndarray}`."""
  if isinstance(source, Mapping):
    return {k: _to_numpy(v) for k, v in unwrap_checkpoint(source).items()}
  path = os.fspath(source)
  if not os.path.exists(path):
    raise FileNotFoundError(f'Checkpoint not found: {path}')
  torch = None if path.endswith(('.safetensors', '.npz')) else _require_torch()
  try:
    if path.endswith('.safetensors'):
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
      return dict(load_file(path))
    if path.endswith('.npz'):
      with np.load(path) as data:
        return {k: data[k] for k in data.files}
    try:
      checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # pylint: disable=broad-except
      # mmcv checkpoints may carry metadata objects that the safe loader refuses.
      checkpoint = torch.load(path, map_location='cpu', weights_only=False)
  except Exception as e:  # pylint: disable=broad-except  (each reader raises its own kinds)
    reason = (str(e).strip().splitlines() or [''])[0]
    raise CheckpointReadError(f'cannot read checkpoint {path}: {type(e).__name__}: {reason} '
                              '(a damaged or truncated file, or not a checkpoint)') from e
  if not isinstance(checkpoint, Mapping):
    raise CheckpointReadError(f'{path} holds a {type(checkpoint).__name__}, not a state dict.')
  return {k: _to_numpy(v) for k, v in unwrap_checkpoint(checkpoint).items()}


def save_state_dict(state_dict: Mapping[str, np.ndarray], path: str | os.PathLike,
                    meta: Mapping[str, Any] | None = None) -> None:
  """Writes `.pth` (an mmcv-style `{'state_dict', 'meta'}` dict) or `.safetensors`."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if path.endswith('.safetensors'):
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    save_file({k: np.asarray(v).copy(order='C') for k, v in state_dict.items()}, path,
              metadata={k: str(v) for k, v in (meta or {}).items()})
  elif path.endswith('.pth') or path.endswith('.pt'):
    torch = _require_torch()
    tensors = {k: torch.from_numpy(np.asarray(v).copy(order='C')) for k, v in state_dict.items()}
    torch.save({'state_dict': tensors, 'meta': dict(meta or {})}, path)
  else:
    raise ValueError(f'Unknown state-dict format for {path}: use .pth or .safetensors.')
