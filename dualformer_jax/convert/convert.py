"""Official PyTorch state dicts <-> Flax variables, for any registered model family.

The family of the model decides the layout (`models.family_of(model).from_pytorch`);
this module reads the file and dispatches.
"""

import os
from typing import Any, Mapping

import jax
import numpy as np

from dualformer_jax import models
from dualformer_jax.convert import io
from dualformer_jax.models.conversion_rules import ConversionError

Variables = dict[str, Any]


def variable_shapes(model) -> Variables:
  """The model's variables as `ShapeDtypeStruct`s (no computation, no memory)."""
  return models.variable_shapes(model)


def from_pytorch(source: str | os.PathLike | Mapping[str, Any], model, *,
                 reinit_head: bool = False, rng: jax.Array | None = None) -> Variables:
  """Official checkpoint -> `{'params': ..., 'batch_stats': ...}` for `model`.

  Args:
    source: a `.pth`/`.pyth` file (mmcv `state_dict`, SlowFast `model_state`, or a bare
      state dict), a `.safetensors` file, or a mapping of arrays, in the official layout
      of `model`'s family (DualFormer: `backbone.*` and `cls_head.fc_cls.*`).
    model: the module the variables are for (any registered family).
    reinit_head: when the checkpoint's classifier does not fit `model.num_classes` (or
      is absent), initialize a new head instead of failing (for fine-tuning). Logged.
    rng: key for the new head; defaults to `PRNGKey(0)`.

  Raises:
    ConversionError: naming missing, unexpected or mis-shaped tensors.
  """
  state_dict = io.load_state_dict(source)
  return models.family_of(model).from_pytorch(state_dict, model, reinit_head=reinit_head,
                                              rng=rng)


def to_pytorch(variables: Mapping[str, Any], model=None) -> dict[str, np.ndarray]:
  """Flax variables -> the official state dict `{key: np.ndarray}` (float32, int64 counters).

  With `model`, its family's layout is used and the variables are checked against its
  structure; without, the variables are taken to be a DualFormer's.
  """
  family = models.family_of(model) if model is not None else models.registry.families()[
      'dualformer']
  return family.to_pytorch(variables, model)
