"""Image (2D) checkpoints -> video (3D) variables, for families that have an inflation.

    variables = convert.from_pytorch_2d('twins_svt_small.pth', model)

Each family's rules live beside the model (DualFormer: `models/dualformer/inflation.py`,
Mobile-Former-3D: `models/mobile_former/inflation.py`, the centre rule);
this module reads the file and dispatches by family name.
"""

import logging
import os
from typing import Any, Callable, Mapping

import jax

from dualformer_jax import models
from dualformer_jax.convert import io

log = logging.getLogger(__name__)


def _dualformer(state_dict, model, rng):
  from dualformer_jax.models.dualformer import inflation  # pylint: disable=g-import-not-at-top
  return inflation.inflate(state_dict, model, rng=rng)


def _mobile_former_3d(state_dict, model, rng):
  from dualformer_jax.models.mobile_former import inflation  # pylint: disable=g-import-not-at-top
  return inflation.inflate(state_dict, model, rng=rng)


# family name -> (2D state dict, model, rng) -> (variables, report with `.summary()`).
INFLATIONS: dict[str, Callable[..., tuple[dict[str, Any], Any]]] = {
    'dualformer': _dualformer,
    'mobile_former_3d': _mobile_former_3d,  # from the official image Mobile-Former
}


def inflate_with_report(source: str | os.PathLike | Mapping[str, Any], model,
                        rng: jax.Array | None = None) -> tuple[dict[str, Any], Any]:
  """Like `from_pytorch_2d`, also returning the report (what was inflated, loaded,
  started from init, ignored)."""
  name = models.family_of(model).name
  if name not in INFLATIONS:
    raise ValueError(f'model family {name!r} has no 2D -> 3D inflation (families with '
                     f'one: {", ".join(sorted(INFLATIONS))}).')
  if isinstance(source, Mapping) and any(k in source for k in io.WRAPPER_KEYS):
    log.info('Inflation: unwrapped the checkpoint (the official code would load nothing).')
  state_dict = io.load_state_dict(source)
  variables, report = INFLATIONS[name](state_dict, model, rng)
  log.info('Inflation report:\n%s', report.summary())
  return variables, report


def from_pytorch_2d(source: str | os.PathLike | Mapping[str, Any], model,
                    rng: jax.Array | None = None) -> dict[str, Any]:
  """A 2D image checkpoint -> `{'params', 'batch_stats'}` of the video `model`.

  Args:
    source: `.pth` (bare, or wrapped in `state_dict` / `model`), `.safetensors`, or a
      mapping of arrays; keys with or without a prefix (`module.`, `backbone.`).
    model: the video model (a family listed in `INFLATIONS`).
    rng: key of the model's own init, used for every tensor the file does not give
      (the classifier included); defaults to `PRNGKey(0)`.
  """
  return inflate_with_report(source, model, rng)[0]
