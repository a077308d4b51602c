"""Official PyTorch state dict <-> Flax variables (`params` and `batch_stats`)."""

import logging
import os
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.convert import io
from dualformer_jax.convert import mapping
from dualformer_jax.models import dualformer

Variables = dict[str, Any]
HEAD_PREFIX = 'cls_head.'

log = logging.getLogger(__name__)


class ConversionError(ValueError):
  """A state dict does not fit the model: names the offending keys."""


def variable_shapes(model: dualformer.DualFormer) -> Variables:
  """The model's variables as `ShapeDtypeStruct`s (no computation, no memory)."""
  clip = jnp.zeros((1, *model.video_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), clip, train=False))
  return nn.unbox(shapes)


def _flat(tree: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


def _key_map(shapes: Variables) -> dict[str, tuple[str, tuple[str, ...], Any]]:
  """official key -> (collection, flax path, expected ShapeDtypeStruct)."""
  result = {}
  for collection in ('params', 'batch_stats'):
    for path, leaf in _flat(shapes.get(collection, {})).items():
      key, _ = mapping.official_key(path)
      result[key] = (collection, path, leaf)
  return result


def _init_head(model: dualformer.DualFormer, rng: jax.Array) -> dict[str, Any]:
  head = dualformer.ClassificationHead(model.num_classes, model.head_dropout_rate,
                                       model.dtype, model.param_dtype)
  features = jnp.zeros((1, 1, 1, 1, model.embed_dims[-1]), model.dtype)
  return nn.unbox(head.init(rng, features, train=False))['params']


def from_pytorch(source: str | os.PathLike | Mapping[str, Any],
                 model: dualformer.DualFormer, *, reinit_head: bool = False,
                 rng: jax.Array | None = None) -> Variables:
  """Official checkpoint -> `{'params': ..., 'batch_stats': ...}` for `model`.

  Args:
    source: a `.pth` file (mmcv checkpoint with `state_dict`, or a bare state dict), a
      `.safetensors` file, or a mapping of arrays, with keys `backbone.*` and
      `cls_head.fc_cls.*`.
    model: the DualFormer the variables are for.
    reinit_head: when the checkpoint's classifier does not fit `model.num_classes` (or
      is absent), initialize a new head instead of failing (for fine-tuning). Logged.
    rng: key for the new head; defaults to `PRNGKey(0)`.

  Raises:
    ConversionError: naming missing, unexpected or mis-shaped tensors.
  """
  state_dict = io.load_state_dict(source)
  expected = _key_map(variable_shapes(model))

  head_keys = [k for k in expected if k.startswith(HEAD_PREFIX)]
  head_fits = all(k in state_dict and
                  tuple(state_dict[k].shape) == _torch_shape(k, expected[k]) for k in head_keys)
  drop_head = reinit_head and not head_fits
  if drop_head:
    found = state_dict.get('cls_head.fc_cls.weight')
    found = 'no head' if found is None else f'{found.shape[0]} classes'
    log.warning('Checkpoint head (%s) does not fit num_classes=%d: re-initializing '
                'cls_head.fc_cls; the backbone is loaded from the checkpoint.',
                found, model.num_classes)

  missing = [k for k in expected if k not in state_dict and not (drop_head and k in head_keys)]
  unexpected = [k for k in state_dict if k not in expected and not
                (drop_head and k.startswith(HEAD_PREFIX))]
  mis_shaped = [
      f'{k}: checkpoint {tuple(state_dict[k].shape)}, model {_torch_shape(k, expected[k])}'
      for k in expected if k in state_dict and not (drop_head and k in head_keys)
      and tuple(state_dict[k].shape) != _torch_shape(k, expected[k])]
  if missing or unexpected or mis_shaped:
    lines = []
    if missing:
      lines.append(f'missing keys ({len(missing)}): {", ".join(missing[:20])}')
    if unexpected:
      lines.append(f'unexpected keys ({len(unexpected)}): {", ".join(unexpected[:20])}')
    if mis_shaped:
      lines.append('mis-shaped tensors:\n  ' + '\n  '.join(mis_shaped[:20]))
    hint = ''
    if any(k.startswith(HEAD_PREFIX) for k in mis_shaped + missing):
      hint = ('\nIf only the classifier differs (another number of classes), pass '
              'reinit_head=True (command line: --reinit_head) to start a new head.')
    raise ConversionError('State dict does not match the model:\n' + '\n'.join(lines) + hint)

  flat: dict[str, dict[tuple[str, ...], Any]] = {'params': {}, 'batch_stats': {}}
  for key, (collection, path, leaf) in expected.items():
    if drop_head and key in head_keys:
      continue
    _, transform = mapping.official_key(path)
    value = transform.to_flax(np.asarray(state_dict[key]))
    if collection == 'params':
      value = value.astype(leaf.dtype)
    flat[collection][path] = jnp.asarray(value)
  variables = {c: flax.traverse_util.unflatten_dict(v) for c, v in flat.items() if v}
  if drop_head:
    variables['params']['head'] = _init_head(
        model, rng if rng is not None else jax.random.PRNGKey(0))
  variables.setdefault('batch_stats', {})
  return variables


def _torch_shape(key: str, entry: tuple[str, tuple[str, ...], Any]) -> tuple[int, ...]:
  """The official tensor shape of the Flax leaf behind `key`."""
  del key
  _, path, leaf = entry
  _, transform = mapping.official_key(path)
  view = np.broadcast_to(np.zeros((), np.float32), leaf.shape)  # no memory
  return tuple(transform.to_torch(view).shape)


def to_pytorch(variables: Mapping[str, Any],
               model: dualformer.DualFormer | None = None) -> dict[str, np.ndarray]:
  """Flax variables -> the official state dict `{key: np.ndarray}` (float32, int64 counters).

  With `model`, the variables are first checked against the model's structure.
  """
  if model is not None:
    expected = {path for c in ('params', 'batch_stats')
                for path in _flat(variable_shapes(model).get(c, {}))}
    given = {path for c in ('params', 'batch_stats')
             for path in _flat(variables.get(c, {}))}
    if expected != given:
      raise ConversionError(
          'Variables do not match the model: missing '
          f'{sorted("/".join(p) for p in expected - given)[:20]}, unexpected '
          f'{sorted("/".join(p) for p in given - expected)[:20]}')
  state_dict = {}
  for collection in ('params', 'batch_stats'):
    for path, value in _flat(variables.get(collection, {})).items():
      key, transform = mapping.official_key(path)
      array = np.asarray(jax.device_get(nn.unbox(value)))
      if array.dtype not in (np.int32, np.int64):
        array = array.astype(np.float32)
      state_dict[key] = transform.to_torch(array).copy(order="C")
  return dict(sorted(state_dict.items()))
