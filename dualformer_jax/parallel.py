"""Two ways to run the steps on many devices: sharded `jax.jit`, or `jax.pmap`.

Both expose the same small interface to the training loop: create the state, run a
train or eval step on this process's share of a batch, and move the state to and from
checkpoints.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from dualformer_jax import sharding as sharding_lib
from dualformer_jax import steps
from dualformer_jax import train_state as train_state_lib

PMAP_AXIS = 'batch'


class JitRuntime:
  """Sharded `jax.jit` over a ('data', 'fsdp', 'tensor') mesh, state sharded by the
  model's logical axis rules, batches split over 'data' and 'fsdp'."""

  name = 'jit'
  _step_args: tuple = ()  # extra train-step arguments before the batch (the TL teacher)

  def __init__(self, model, tx, schedule, num_classes: int, clip_shape, mesh_shape,
               rules=sharding_lib.DEFAULT_RULES, devices=None, normalization=None,
               eval_options=None, **train_options):
    self.model, self.tx, self.rules = model, tx, rules
    self.mesh = sharding_lib.create_mesh(mesh_shape, devices)
    self.clip_shape = clip_shape
    self.batch_shards = self.mesh.shape['data'] * self.mesh.shape['fsdp']
    self._train_step = steps.make_train_step(model, tx, schedule, normalization=normalization,
                                             **train_options)
    self._eval_step = steps.make_eval_step(model, num_classes, normalization=normalization,
                                           **(eval_options or {}))
    self.shardings = None
    self._jit_train = self._jit_eval = None

  def _batch_sharding(self, ndim: int) -> NamedSharding:
    return sharding_lib.batch_sharding(self.mesh, ndim)

  def init_state(self, rng) -> train_state_lib.TrainState:
    state, self.shardings = train_state_lib.create_sharded_state(
        self.model, self.tx, self.clip_shape, rng, self.mesh, self.rules)
    replicated = NamedSharding(self.mesh, PartitionSpec())
    self._jit_train = jax.jit(self._train_step, out_shardings=(self.shardings, replicated),
                              donate_argnums=(0,))
    self._jit_eval = jax.jit(self._eval_step, out_shardings=replicated)
    return state

  def abstract_state(self, state) -> Any:
    """Shapes, dtypes and target shardings of `state` (for restoring into this layout)."""
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, self.shardings)

  def global_batch(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: jax.make_array_from_process_local_data(self._batch_sharding(v.ndim), v)
            for k, v in local.items()}

  def use_teacher(self, train_step, teacher_variables, teacher_shapes) -> None:
    """Token Labelling: `train_step(state, teacher_variables, batch)` replaces the plain
    step (call before `init_state`). The teacher's host variables are placed sharded by
    the same logical rules as the student (`teacher_shapes`: boxed ShapeDtypeStructs)
    and passed to every step as an argument."""
    shardings = sharding_lib.logical_to_shardings(teacher_shapes, self.mesh, self.rules)
    self._train_step = train_step
    self._step_args = (train_state_lib.put_tree(teacher_variables, shardings),)

  def train_step(self, state, local_batch):
    with self.mesh, nn.logical_axis_rules(self.rules):
      return self._jit_train(state, *self._step_args, self.global_batch(local_batch))

  def eval_step(self, state, local_batch):
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    with self.mesh, nn.logical_axis_rules(self.rules):
      return self._jit_eval(variables, self.global_batch(local_batch))

  def with_variables(self, state, params, batch_stats):
    """`state` with host parameter values (e.g. pretrained) placed in its layout."""
    return state.replace(params=train_state_lib.put_tree(params, self.shardings.params),
                         batch_stats=train_state_lib.put_tree(batch_stats,
                                                              self.shardings.batch_stats))

  def for_checkpoint(self, state):
    return state

  def from_checkpoint(self, state):
    return state

  @staticmethod
  def fetch(tree) -> Any:
    """Replicated outputs -> host numpy (each process reads its local copy)."""
    return jax.tree_util.tree_map(lambda x: np.array(x.addressable_data(0)), tree)  # a copy


class PmapRuntime:
  """`jax.pmap` over this process's devices; gradients and BatchNorm statistics are
  averaged over all devices (the model must use `bn_axis_name='batch'`)."""

  name = 'pmap'
  _step_args: tuple = ()  # extra train-step arguments before the batch (the TL teacher)

  def __init__(self, model, tx, schedule, num_classes: int, clip_shape, normalization=None,
               eval_options=None, **train_options):
    if getattr(model, 'bn_axis_name', PMAP_AXIS) != PMAP_AXIS:
      raise ValueError(f'pmap needs the model built with bn_axis_name={PMAP_AXIS!r}.')
    self.model, self.tx, self.clip_shape = model, tx, clip_shape
    self.devices = jax.local_devices()
    self.batch_shards = jax.device_count()
    train_step = steps.make_train_step(model, tx, schedule, axis_name=PMAP_AXIS,
                                       normalization=normalization, **train_options)
    self._pmap_train = jax.pmap(train_step, axis_name=PMAP_AXIS, donate_argnums=(0,))
    self._pmap_eval = jax.pmap(
        steps.make_eval_step(model, num_classes, PMAP_AXIS, normalization=normalization,
                             **(eval_options or {})),
        axis_name=PMAP_AXIS)

  def _replicate(self, tree):
    """One copy per local device, as a pmap-sharded array `[devices, ...]`."""
    n = len(self.devices)

    stacked = NamedSharding(jax.sharding.Mesh(np.asarray(self.devices), (PMAP_AXIS,)),
                            PartitionSpec(PMAP_AXIS))

    def put(x):
      x = np.asarray(x)
      return jax.device_put(np.broadcast_to(x[None], (n, *x.shape)), stacked)

    return jax.tree_util.tree_map(put, tree)

  def init_state(self, rng):
    _, init_state = train_state_lib.make_init_fn(self.model, self.tx, self.clip_shape)
    return self._replicate(jax.jit(init_state)(rng))

  def abstract_state(self, state) -> Any:
    device = SingleDeviceSharding(self.devices[0])
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=device), state)

  def _split(self, local):
    n = len(self.devices)
    return {k: v.reshape(n, v.shape[0] // n, *v.shape[1:]) for k, v in local.items()}

  def use_teacher(self, train_step, teacher_variables, teacher_shapes=None) -> None:
    """Token Labelling: `train_step(state, teacher_variables, batch)` (built with
    `axis_name='batch'`) replaces the plain step; the teacher is replicated."""
    del teacher_shapes  # every device holds a full copy
    self._pmap_train = jax.pmap(train_step, axis_name=PMAP_AXIS, donate_argnums=(0,))
    self._step_args = (self._replicate(teacher_variables),)

  def train_step(self, state, local_batch):
    state, metrics = self._pmap_train(state, *self._step_args, self._split(local_batch))
    return state, jax.tree_util.tree_map(lambda x: x[0], metrics)

  def eval_step(self, state, local_batch):
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    return jax.tree_util.tree_map(lambda x: x[0], self._pmap_eval(variables,
                                                                  self._split(local_batch)))

  def with_variables(self, state, params, batch_stats):
    return state.replace(params=self._replicate(jax.tree_util.tree_map(jnp.asarray, params)),
                         batch_stats=self._replicate(
                             jax.tree_util.tree_map(jnp.asarray, batch_stats)))

  def for_checkpoint(self, state):
    """One copy on the host (every device holds the same state)."""
    return jax.device_get(jax.tree_util.tree_map(lambda x: x[0], state))

  def from_checkpoint(self, state):
    return self._replicate(state)

  @staticmethod
  def fetch(tree) -> Any:
    return jax.device_get(tree)
