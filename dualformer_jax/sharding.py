"""Device meshes and logical-axis sharding rules.

Model parameters carry logical axis names (`embed`, `mlp`, `heads`, ...); these rules
map them onto the mesh axes `data`, `fsdp` and `tensor`:

- `data`: pure data parallelism (parameters replicated);
- `fsdp`: batch split *and* parameters split along their `embed` axis (ZeRO-3 style);
- `tensor`: the wide axes of the MLP and attention projections split across devices.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ('data', 'fsdp', 'tensor')

# (logical axis, mesh axis or axes or None). First match wins.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    # Activations: the batch is split over data and fsdp, the rest kept whole.
    ('act_batch', ('data', 'fsdp')),
    ('act_time', None),
    ('act_height', None),
    ('act_width', None),
    ('act_embed', None),
    # Parameters.
    ('embed', 'fsdp'),
    ('mlp', 'tensor'),
    ('heads', 'tensor'),
    ('qkv', 'tensor'),
    ('kv', 'tensor'),
    ('classes', None),
    ('norm', None),
    ('kernel_t', None),
    ('kernel_h', None),
    ('kernel_w', None),
    ('conv_in', None),
)


def create_mesh(shape: Mapping[str, int] | Sequence[int] = (-1, 1, 1),
                devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh with axes `('data', 'fsdp', 'tensor')`; one size may be -1 (the rest).

  Example: `create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})` on 8 devices.
  """
  if isinstance(shape, Mapping):
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
      raise ValueError(f'Unknown mesh axes {sorted(unknown)}; use {MESH_AXES}.')
    shape = [shape.get(axis, 1) for axis in MESH_AXES]
  shape = list(shape)
  devices = list(devices if devices is not None else jax.devices())
  if shape.count(-1) > 1:
    raise ValueError(f'At most one mesh axis may be -1, got {shape}.')
  if -1 in shape:
    known = int(np.prod([s for s in shape if s != -1]))
    if len(devices) % known:
      raise ValueError(f'{len(devices)} devices cannot be split into mesh {shape}.')
    shape[shape.index(-1)] = len(devices) // known
  if int(np.prod(shape)) != len(devices):
    raise ValueError(f'Mesh {dict(zip(MESH_AXES, shape))} needs {int(np.prod(shape))} '
                     f'devices, but {len(devices)} are available.')
  device_grid = np.asarray(devices).reshape(shape)
  return Mesh(device_grid, MESH_AXES)


def logical_to_shardings(abstract_tree: Any, mesh: Mesh,
                         rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> Any:
  """NamedShardings for a tree of boxed (`nn.Partitioned`) or plain leaves.

  Leaves without logical names are replicated.
  """
  specs = nn.get_partition_spec(abstract_tree)
  mesh_specs = nn.logical_to_mesh(specs, rules)
  return jax.tree_util.tree_map(lambda spec: NamedSharding(mesh, spec), mesh_specs,
                                is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Leading axis split over `data` and `fsdp`, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(('data', 'fsdp'), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def init_sharded(init_fn, mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES,
                 *args) -> tuple[Any, Any]:
  """Runs `init_fn(*args)` under `jit` with sharded outputs: no full copy on one device.

  `init_fn` returns a tree with `nn.Partitioned` leaves (e.g. `model.init`). Returns
  `(unboxed tree, shardings)`.
  """
  abstract = jax.eval_shape(init_fn, *args)
  shardings = logical_to_shardings(abstract, mesh, rules)
  unboxed_init = lambda *a: nn.unbox(init_fn(*a))
  with mesh, nn.logical_axis_rules(rules):
    tree = jax.jit(unboxed_init, out_shardings=shardings)(*args)
  return tree, shardings
