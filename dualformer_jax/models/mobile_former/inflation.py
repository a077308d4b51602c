"""Image Mobile-Former weights -> Mobile-Former-3D, by the centre rule.

Each 2D kernel `(O, I/g, kh, kw)` becomes `(O, I/g, kt, kh, kw)` with the image kernel in
the centre temporal slice `kt // 2` and zeros elsewhere; everything else (tokens,
bridges, Formers, BatchNorm, head) is copied. A clip of identical frames then gives the
image model's logits: the centre kernels ignore the (identical) neighbours, attention
over t identical copies of each position averages as over one, and the pooling is
invariant. (I3D's w / kt in every slice would be the usual alternative; it does not keep
this identity at clip borders, where zero padding meets the outer slices.)

    video = models.create_model('mobile_former_3d_s', num_classes=400)
    variables, report = inflation.inflate(image_state_dict, video)  # new 400-class head
    # the same through the shared entry point: convert.from_pytorch_2d(path, video)
"""

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np

from dualformer_jax.models import conversion_rules as rules
from dualformer_jax.models.mobile_former import conversion
from dualformer_jax.models.mobile_former import model as mf_model


def inflate_kernel(weight: np.ndarray, temporal_kernel: int) -> np.ndarray:
  """`(O, I/g, kh, kw)` -> `(O, I/g, kt, kh, kw)`, the weight in the centre slice."""
  weight = np.asarray(weight)
  out = np.zeros((*weight.shape[:2], temporal_kernel, *weight.shape[2:]), weight.dtype)
  out[:, :, temporal_kernel // 2] = weight
  return out


def inflate_state_dict(state_dict: Mapping[str, np.ndarray],
                       model: mf_model.MobileFormer3D) -> dict[str, np.ndarray]:
  """An official image state dict -> the video state dict `model` expects.

  Each 2D conv weight is inflated to the temporal extent `model` has at that place
  (1 for the stem, bneck-lite and pointwise convs). Keys the model does not have, and
  weights whose spatial shape does not fit, are passed through unchanged, so that
  `from_pytorch` reports them (key and both shapes).
  """
  expected = rules.key_map(conversion.variable_shapes(model), conversion.official_key_3d)
  inflated = {}
  for key, value in state_dict.items():
    value = np.asarray(value)
    if key in expected and value.ndim == 4:
      _, path, leaf = expected[key]
      target = rules.torch_shape(path, leaf, conversion.official_key_3d)
      if len(target) == 5 and value.shape == target[:2] + target[3:]:
        value = inflate_kernel(value, target[2])
    inflated[key] = value
  return inflated


def inflate_variables(image_variables: Mapping[str, Any], image_model: mf_model.MobileFormer,
                      video_model: mf_model.MobileFormer3D) -> dict[str, Any]:
  """Flax variables of an image model -> those of a video model with the same widths."""
  state_dict = conversion.to_pytorch(image_variables, image_model)
  return conversion.from_pytorch(inflate_state_dict(state_dict, video_model), video_model)


@dataclasses.dataclass
class InflationReport:
  """What `inflate` did, by official (3D) key.

  Attributes:
    inflated: 2D kernels given a temporal extent > 1 (the image kernel in the centre).
    loaded: tensors loaded unchanged (1x1 and per-frame kernels as `(O, I, 1, kh, kw)`).
    from_init: tensors of the model's own initialization (the classifier, when the
      file's class count differs from the model's).
  """
  inflated: list[str] = dataclasses.field(default_factory=list)
  loaded: list[str] = dataclasses.field(default_factory=list)
  from_init: list[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    lines = [f'inflated {len(self.inflated)} (centre rule), loaded as-is {len(self.loaded)}, '
             f'started from init {len(self.from_init)} tensors']
    if self.from_init:
      lines.append('started from init: ' + ', '.join(self.from_init))
    return '\n'.join(lines)


def inflate(state_dict: Mapping[str, np.ndarray], model: mf_model.MobileFormer3D,
            rng: jax.Array | None = None) -> tuple[dict[str, Any], InflationReport]:
  """An official image state dict -> (`{'params', 'batch_stats'}` of `model`, report).

  Strict like `conversion.from_pytorch` (a key or shape that does not fit fails, naming
  it); only the classifier `classifier.classifier.1` is replaced (from `model`'s init with
  `rng`) when the file has another class count. Same widths as the image variant are
  needed: `mobile_former_3d_xs|s|m|l` take MF-151M/214M/294M/508M files.
  """
  video_sd = inflate_state_dict(state_dict, model)
  variables = conversion.from_pytorch(video_sd, model, reinit_head=True, rng=rng)
  report = InflationReport()
  for key, value in conversion.to_pytorch(variables, model).items():
    given = video_sd.get(key)
    if given is None or np.shape(given) != np.shape(value):
      report.from_init.append(key)
    elif np.ndim(state_dict[key]) != np.ndim(given) and np.shape(given)[2] > 1:
      report.inflated.append(key)
    else:
      report.loaded.append(key)
  return variables, report
