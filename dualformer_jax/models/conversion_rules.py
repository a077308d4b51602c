"""Shared machinery for converting official PyTorch state dicts to Flax variables and back.

A family describes its checkpoint layout as `official_key(path) -> (key, Transform)`:
each Flax leaf (collection-free path of module names, then the leaf name) maps to one
official key and a layout transform with two directions. `load_variables` and
`export_state_dict` do the rest: strict key and shape checks that name the tensors,
optional re-initialization of the classifier, dtype handling.
"""

import dataclasses
import logging
from typing import Any, Callable, Iterable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Variables = dict[str, Any]
OfficialKey = Callable[[tuple[str, ...]], tuple[str, 'Transform']]
COLLECTIONS = ('params', 'batch_stats')

log = logging.getLogger(__name__)


class ConversionError(ValueError):
  """A state dict does not fit the model: names the offending keys."""


@dataclasses.dataclass(frozen=True)
class Transform:
  """A layout change between a PyTorch tensor and a Flax array (both directions)."""
  name: str
  to_torch: Callable[[np.ndarray], np.ndarray]
  to_flax: Callable[[np.ndarray], np.ndarray]


IDENTITY = Transform('identity', lambda a: a, lambda a: a)
# Linear: torch (out, in) <-> flax (in, out).
LINEAR = Transform('linear', lambda k: k.T, lambda w: w.T)
# Conv3d: torch (out, in, kd, kh, kw) <-> flax (kd, kh, kw, in, out).
CONV3D = Transform('conv3d', lambda k: k.transpose(4, 3, 0, 1, 2),
                   lambda w: w.transpose(2, 3, 4, 1, 0))
# Conv2d: torch (out, in, kh, kw) <-> flax (kh, kw, in, out).
CONV2D = Transform('conv2d', lambda k: k.transpose(3, 2, 0, 1), lambda w: w.transpose(2, 3, 1, 0))
# Depthwise Conv3d: torch (c, 1, kd, kh, kw) <-> flax (kd, kh, kw, c).
DEPTHWISE3D = Transform('depthwise3d', lambda k: k.transpose(3, 0, 1, 2)[:, None],
                        lambda w: w[:, 0].transpose(1, 2, 3, 0))
# BatchNorm's counter: torch int64 <-> flax int32.
COUNTER = Transform('counter', lambda a: a.astype(np.int64), lambda a: a.astype(np.int32))


def flatten(tree: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


def key_map(shapes: Variables, official_key: OfficialKey
            ) -> dict[str, tuple[str, tuple[str, ...], Any]]:
  """official key -> (collection, flax path, expected ShapeDtypeStruct)."""
  result = {}
  for collection in COLLECTIONS:
    for path, leaf in flatten(shapes.get(collection, {})).items():
      key, _ = official_key(path)
      result[key] = (collection, path, leaf)
  return result


def torch_shape(path: tuple[str, ...], leaf: Any, official_key: OfficialKey) -> tuple[int, ...]:
  """The official tensor shape of the Flax leaf at `path`."""
  _, transform = official_key(path)
  view = np.broadcast_to(np.zeros((), np.float32), leaf.shape)  # no memory
  return tuple(transform.to_torch(view).shape)


def _mismatch_report(missing, unexpected, mis_shaped, head_prefix) -> str:
  """A first paragraph naming the first mismatch (the command lines print only that
  one), then every mismatch by kind."""
  if mis_shaped:
    first = f'first mismatched tensor {mis_shaped[0]}'
  elif missing and unexpected:
    first = (f'the model\'s {missing[0]} is not in the checkpoint, whose {unexpected[0]} '
             'is not in the model')
  elif missing:
    first = f'the model\'s {missing[0]} is not in the checkpoint'
  else:
    first = f'the checkpoint\'s {unexpected[0]} is not in the model'
  counts = ', '.join(f'{n} {kind}' for n, kind in (
      (len(mis_shaped), 'mis-shaped'), (len(missing), 'missing'),
      (len(unexpected), 'unexpected')) if n)
  summary = (f'State dict does not match the model: {first} ({counts} tensors; another '
             'architecture or variant?)')
  if all(k.startswith(head_prefix) for k in mis_shaped + missing + unexpected):
    items = (mis_shaped + [f'{k}: not in the checkpoint' for k in missing] +
             [f'{k}: not in the model' for k in unexpected])
    summary = (f'State dict does not match the model: only the classifier differs '
               f'({"; ".join(items[:4])}): pass reinit_head=True (--reinit_head) to start '
               'a new one')
  lines = []
  if mis_shaped:
    lines.append('mis-shaped tensors:\n  ' + '\n  '.join(mis_shaped[:20]))
  if missing:
    lines.append(f'missing keys ({len(missing)}): {", ".join(missing[:20])}')
  if unexpected:
    lines.append(f'unexpected keys ({len(unexpected)}): {", ".join(unexpected[:20])}')
  hint = ''
  if any(k.startswith(head_prefix) for k in mis_shaped + missing):
    hint = ('\nIf only the classifier differs (another number of classes), pass '
            'reinit_head=True (command line: --reinit_head) to start a new head.')
  return summary + '.\n\n' + '\n'.join(lines) + hint


def load_variables(state_dict: Mapping[str, np.ndarray], shapes: Variables,
                   official_key: OfficialKey, *, head_prefix: str,
                   reinit_head: bool = False,
                   init_head: Callable[[], dict[str, Any]] | None = None,
                   head_path: tuple[str, ...] = ('head',),
                   ignore: Callable[[str], bool] = lambda key: False) -> Variables:
  """Official state dict -> `{'params', 'batch_stats'}` shaped like `shapes`.

  Args:
    state_dict: `{key: np.ndarray}`.
    shapes: the model's variables as ShapeDtypeStructs (`registry.variable_shapes`).
    official_key: the family's name map.
    head_prefix: official prefix of the classifier's keys.
    reinit_head: when the classifier does not fit (or is absent), take `init_head()`
      at `params[head_path]` instead of failing (logged).
    ignore: keys of the official file that the model has no place for (dropped).

  Raises:
    ConversionError: naming missing, unexpected or mis-shaped tensors.
  """
  expected = key_map(shapes, official_key)
  shape_of = lambda k: torch_shape(expected[k][1], expected[k][2], official_key)
  head_keys = [k for k in expected if k.startswith(head_prefix)]
  head_fits = all(k in state_dict and tuple(state_dict[k].shape) == shape_of(k)
                  for k in head_keys)
  drop_head = reinit_head and not head_fits
  if drop_head:
    if init_head is None:
      raise ConversionError('reinit_head: this family cannot initialize a new head.')
    rows = [tuple(state_dict[k].shape)[0] for k in head_keys
            if k in state_dict and k.endswith('weight') and state_dict[k].ndim == 2]
    found = f'{rows[0]} classes' if rows else 'no head'
    wanted = [tuple(shape_of(k))[0] for k in head_keys
              if k.endswith('weight') and len(shape_of(k)) == 2]
    modules = sorted({k.rsplit('.', 1)[0] for k in head_keys})
    log.warning('Checkpoint head (%s) does not fit num_classes=%s: re-initializing %s; '
                'the backbone is loaded from the checkpoint.', found,
                wanted[0] if wanted else '?', ', '.join(modules))
  skip = lambda k: drop_head and k in head_keys
  missing = [k for k in expected if k not in state_dict and not skip(k)]
  unexpected = [k for k in state_dict if k not in expected and not ignore(k) and
                not (drop_head and k.startswith(head_prefix))]
  mis_shaped = [f'{k}: checkpoint {tuple(state_dict[k].shape)}, model {shape_of(k)}'
                for k in state_dict  # in the checkpoint's order (a .pth: the model's)
                if k in expected and not skip(k) and tuple(state_dict[k].shape) != shape_of(k)]
  if missing or unexpected or mis_shaped:
    raise ConversionError(_mismatch_report(missing, unexpected, mis_shaped, head_prefix))

  flat: dict[str, dict[tuple[str, ...], Any]] = {c: {} for c in COLLECTIONS}
  for key, (collection, path, leaf) in expected.items():
    if skip(key):
      continue
    _, transform = official_key(path)
    value = transform.to_flax(np.asarray(state_dict[key]))
    if collection == 'params' or np.issubdtype(leaf.dtype, np.floating):
      value = value.astype(leaf.dtype)
    flat[collection][path] = jnp.asarray(value)
  variables = {c: flax.traverse_util.unflatten_dict(v) for c, v in flat.items() if v}
  if drop_head:
    params = variables.setdefault('params', {})
    node = params
    for name in head_path[:-1]:
      node = node.setdefault(name, {})
    node[head_path[-1]] = init_head()
  variables.setdefault('batch_stats', {})
  return variables


def check_structure(variables: Mapping[str, Any], shapes: Variables) -> None:
  """Raises ConversionError unless `variables` has exactly the leaves of `shapes`."""
  expected = {p for c in COLLECTIONS for p in flatten(shapes.get(c, {}))}
  given = {p for c in COLLECTIONS for p in flatten(variables.get(c, {}))}
  if expected != given:
    raise ConversionError(
        'Variables do not match the model: missing '
        f'{sorted("/".join(p) for p in expected - given)[:20]}, unexpected '
        f'{sorted("/".join(p) for p in given - expected)[:20]}')


def export_state_dict(variables: Mapping[str, Any], official_key: OfficialKey,
                      collections: Iterable[str] = COLLECTIONS) -> dict[str, np.ndarray]:
  """Flax variables -> `{official key: np.ndarray}` (float32, int64 counters), sorted."""
  state_dict = {}
  for collection in collections:
    for path, value in flatten(variables.get(collection, {})).items():
      key, transform = official_key(path)
      array = np.asarray(jax.device_get(nn.unbox(value)))
      if array.dtype not in (np.int32, np.int64):
        array = array.astype(np.float32)
      state_dict[key] = transform.to_torch(array).copy(order='C')
  return dict(sorted(state_dict.items()))


def init_submodule(module: nn.Module, example: jax.Array, rng: jax.Array) -> dict[str, Any]:
  """Fresh `params` of a standalone submodule (e.g. a new classifier)."""
  return nn.unbox(module.init(rng, example, train=False))['params']
