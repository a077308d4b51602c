"""The training state and its creation, sharded by the model's logical axes."""

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dualformer_jax import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # train steps taken (micro-steps when accumulating gradients)
  params: Any
  batch_stats: Any
  opt_state: optax.OptState
  rng: jax.Array  # base key; step keys are folded from it


def _path_key(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def _match_param_shardings(tree: Any, param_shardings: dict[tuple[str, ...], Any],
                           param_shapes: dict[tuple[str, ...], tuple[int, ...]],
                           replicated: NamedSharding) -> Any:
  """Optimizer-state leaves shaped like a parameter (mu, nu) get that parameter's sharding."""

  def pick(path, leaf):
    key = _path_key(path)
    for n in range(len(key)):
      suffix = key[n:]
      if suffix in param_shardings and param_shapes[suffix] == tuple(leaf.shape):
        return param_shardings[suffix]
    return replicated

  return jax.tree_util.tree_map_with_path(pick, tree)


def state_shardings(abstract_state: TrainState, boxed_params: Any, mesh: Mesh,
                    rules) -> TrainState:
  """NamedShardings for every leaf of the state (parameters by their logical axes)."""
  replicated = NamedSharding(mesh, PartitionSpec())
  param_sh = sharding_lib.logical_to_shardings(boxed_params, mesh, rules)
  flat_sh = {_path_key(p): s for p, s in jax.tree_util.tree_flatten_with_path(param_sh)[0]}
  flat_shapes = {_path_key(p): tuple(leaf.shape) for p, leaf in
                 jax.tree_util.tree_flatten_with_path(abstract_state.params)[0]}
  return TrainState(
      step=replicated,
      params=param_sh,
      batch_stats=jax.tree_util.tree_map(lambda _: replicated, abstract_state.batch_stats),
      opt_state=_match_param_shardings(abstract_state.opt_state, flat_sh, flat_shapes,
                                       replicated),
      rng=replicated)


def make_init_fn(model: nn.Module, tx: optax.GradientTransformation,
                 clip_shape: tuple[int, ...]) -> tuple[Callable, Callable]:
  """`(boxed_variables_fn(rng), init_state_fn(rng))`, both traceable."""

  def boxed_variables(rng):
    return model.init(rng, jnp.zeros(clip_shape, jnp.float32), train=False)

  def init_state(rng):
    param_rng, state_rng = jax.random.split(rng)
    variables = nn.unbox(boxed_variables(param_rng))
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(params), rng=state_rng)

  return boxed_variables, init_state


def create_sharded_state(model, tx, clip_shape, rng, mesh: Mesh, rules
                         ) -> tuple[TrainState, TrainState]:
  """Creates the state directly in its sharded layout; returns (state, shardings)."""
  boxed_variables, init_state = make_init_fn(model, tx, clip_shape)
  boxed_params = jax.eval_shape(boxed_variables, rng)['params']
  abstract = jax.eval_shape(init_state, rng)
  shardings = state_shardings(abstract, boxed_params, mesh, rules)
  with mesh, nn.logical_axis_rules(rules):
    state = jax.jit(init_state, out_shardings=shardings)(rng)
  return state, shardings


def put_tree(tree: Any, shardings: Any) -> Any:
  """Host arrays (identical on every process) -> global arrays with `shardings`."""

  def put(x, sh):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sh, lambda index: x[index])

  return jax.tree_util.tree_map(put, tree, shardings)
