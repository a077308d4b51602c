"""ImageNet 2D -> 3D inflation for DualFormer: the official `inflate_weights`, made robust.

Reads a 2D image model's state dict (the official 2D DualFormer layout, or timm's
Twins-SVT) and returns the variables of a video DualFormer plus a report. The rules work
on official key names (`backbone.*`), key by key:

- a Conv2d kernel `(o, c, kh, kw)` whose 3D form is `(o, c, n, kh, kw)` gets its time axis
  by repeating and dividing by n in float32 (patch embeddings, PEG, fine pooling `sr`),
  except `attn.lr.0` (coarse pooling), which gets a time axis of size 1, unscaled;
- `attn.lr.3` (stages 0, 1) is set to the official constants 1/16 (stage 0) and 1/4
  (stage 1) whatever its kernel size, bias 0; a 2D `lr.3` is discarded;
- every other tensor of the same shape is loaded unchanged; the classifier is never read.

Tensors the file lacks keep the model's own initialization (`model.init`). Differences
from the official code (quirks 1-3 of the reference notes): a key prefix (`module.`,
`backbone.`, ...) is stripped, wrapped checkpoints are unwrapped, and the time repeat
count is read from the 3D kernel's shape, not from the key's position in the file, so
any key order works. Each is logged and recorded in the report.
"""

import dataclasses
import logging
import re
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models.dualformer import conversion

log = logging.getLogger(__name__)

BACKBONE = 'backbone.'
# The official constants for `attn.lr.3.weight` by stage (hard-coded for the K400
# geometry, kept whatever the kernel size to reproduce the official numbers).
LR3_CONSTANTS = {0: 1.0 / 16, 1: 1.0 / 4}
# Below this fraction of the backbone's tensors found in the file, it is not a 2D
# DualFormer / Twins-SVT state dict (or it is for another model) and loading fails.
MIN_MATCH_FRACTION = 0.5


class InflationError(ValueError):
  """The 2D state dict does not fit the model."""


@dataclasses.dataclass
class InflationReport:
  """What `inflate` did, tensor by tensor (official 3D names, `backbone.` included).

  Attributes:
    inflated: 2D kernels given a time axis (repeated / n, or `lr.0` unscaled).
    loaded: tensors loaded unchanged.
    constant: `attn.lr.3` tensors set to the official constants.
    from_init: tensors that kept the model's own initialization (head included).
    ignored: keys of the 2D file that were not used, with the reason.
    notes: what was done differently from the official code, and why.
  """
  inflated: list[str] = dataclasses.field(default_factory=list)
  loaded: list[str] = dataclasses.field(default_factory=list)
  constant: list[str] = dataclasses.field(default_factory=list)
  from_init: list[str] = dataclasses.field(default_factory=list)
  ignored: dict[str, str] = dataclasses.field(default_factory=dict)
  notes: list[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    lines = [f'inflated {len(self.inflated)}, loaded as-is {len(self.loaded)}, '
             f'set to constants {len(self.constant)}, started from init '
             f'{len(self.from_init)}, ignored {len(self.ignored)} tensors']
    if self.from_init:
      lines.append('started from init: ' + ', '.join(self.from_init))
    if self.ignored:
      lines.append('ignored: ' + ', '.join(f'{k} ({why})' for k, why in self.ignored.items()))
    lines += [f'note: {n}' for n in self.notes]
    return '\n'.join(lines)


def _strip_prefix(state_dict: Mapping[str, Any], targets: set[str],
                  report: InflationReport) -> dict[str, Any]:
  """Removes the most common prefix that turns keys into backbone keys."""
  counts: dict[str, int] = {}
  for key in state_dict:
    for m in re.finditer(r'(?:^|\.)', key):
      start = m.end()
      if key[start:] in targets:
        prefix = key[:start]
        counts[prefix] = counts.get(prefix, 0) + 1
        break
  if not counts:
    return dict(state_dict)
  prefix = max(counts, key=lambda p: (counts[p], -len(p)))
  if not prefix:
    return dict(state_dict)
  note = (f'stripped the key prefix {prefix!r} (the official code crashes on '
          'prefixed sr keys or loads nothing)')
  log.info('Inflation: %s', note)
  report.notes.append(note)
  out = {}
  for key, value in state_dict.items():
    if key.startswith(prefix):
      out[key[len(prefix):]] = value
    else:
      report.ignored[key] = f'outside the prefix {prefix!r}'
  return out


def _is_twins_sr(key: str, w2: np.ndarray, shape3: tuple[int, ...]) -> bool:
  """A Twins-SVT `attn.sr` (full conv `(C, C, s, s)`) where DualFormer's is depthwise."""
  return (key.endswith('attn.sr.weight') and w2.ndim == 4 and len(shape3) == 5 and
          shape3[1] == 1 and w2.shape[0] == w2.shape[1] == shape3[0] and
          w2.shape[2:] == shape3[3:])


def _add_time(key: str, w2: np.ndarray, shape3: tuple[int, ...]) -> np.ndarray:
  n = shape3[2]
  if re.search(r'attn\.lr\.0\.weight$', key):
    if n != 1:
      raise InflationError(f'{key}: expected a time extent of 1, model has {shape3}')
    return w2[:, :, None]
  w3 = np.repeat(w2.astype(np.float32)[:, :, None], n, axis=2)
  return w3 / np.float32(n)


def inflate_state_dict(state_dict_2d: Mapping[str, Any], init_3d: Mapping[str, np.ndarray]
                       ) -> tuple[dict[str, np.ndarray], InflationReport]:
  """2D state dict + the model's initial official state dict -> 3D state dict, report.

  `init_3d` holds every official 3D key (`backbone.*`, `cls_head.*`) at its initial value.
  """
  report = InflationReport()
  targets = {k[len(BACKBONE):] for k in init_3d if k.startswith(BACKBONE)}
  sd2 = _strip_prefix(state_dict_2d, targets, report)
  found = [k for k in targets if k in sd2 and not re.search(r'attn\.lr\.3\.', k)]
  wanted = [k for k in targets if not re.search(r'attn\.lr\.3\.', k)]
  if len(found) < MIN_MATCH_FRACTION * len(wanted):
    example = ', '.join(sorted(sd2)[:5]) or '(no tensors)'
    raise InflationError(
        f'the 2D state dict matches only {len(found)} of the {len(wanted)} backbone '
        f'tensors of the model: is it a 2D DualFormer or a timm Twins-SVT state dict of '
        f'the right size? Its first keys: {example}')

  out = {k: np.asarray(v) for k, v in init_3d.items()}
  for key3 in sorted(init_3d, key=lambda k: (not k.startswith(BACKBONE), k)):
    value3 = out[key3]
    if not key3.startswith(BACKBONE):
      report.from_init.append(key3)
      continue
    key = key3[len(BACKBONE):]
    lr3 = re.fullmatch(r'blocks\.(\d+)\.\d+\.attn\.lr\.3\.(weight|bias)', key)
    if lr3:
      stage = int(lr3.group(1))
      if key in sd2:
        report.ignored[key] = 'official: the 2D lr.3 is replaced by constants'
      if lr3.group(2) == 'bias':
        out[key3] = np.zeros_like(value3)
      elif stage in LR3_CONSTANTS:
        out[key3] = np.full_like(value3, LR3_CONSTANTS[stage])
      else:  # unreachable with the official architecture (no coarse level in stage >= 2)
        report.from_init.append(key3)
        continue
      report.constant.append(key3)
      continue
    if key not in sd2:
      report.from_init.append(key3)
      continue
    w2 = np.asarray(sd2[key])
    shape3 = tuple(value3.shape)
    if tuple(w2.shape) == shape3:
      out[key3] = w2.astype(value3.dtype)
      report.loaded.append(key3)
    elif w2.ndim == 4 and len(shape3) == 5 and tuple(w2.shape) == shape3[:2] + shape3[3:]:
      out[key3] = _add_time(key, w2, shape3).astype(value3.dtype)
      report.inflated.append(key3)
    elif _is_twins_sr(key, w2, shape3):
      report.ignored[key] = (f'Twins-SVT full conv {tuple(w2.shape)}, the model\'s is '
                             f'depthwise {shape3}')
      report.from_init.append(key3)
    else:
      raise InflationError(
          f'{key}: the 2D file has shape {tuple(w2.shape)}, the model needs {shape3} '
          f'(3D) or {shape3[:2] + shape3[3:]} (2D): a file of another variant?')
  for key in sd2:
    if key not in targets and key not in report.ignored:
      report.ignored[key] = 'not in the video backbone'
  if report.from_init:
    log.info('Inflation: %d tensors start from the model\'s init: %s',
             len(report.from_init), ', '.join(report.from_init))
  return out, report


def inflate(state_dict_2d: Mapping[str, Any], model, rng: jax.Array | None = None
            ) -> tuple[dict[str, Any], InflationReport]:
  """2D state dict -> (`{'params', 'batch_stats'}` of `model`, report).

  Tensors the file lacks (and the classifier) come from `model.init(rng, ...)`.
  """
  rng = rng if rng is not None else jax.random.PRNGKey(0)
  from dualformer_jax.models import registry  # pylint: disable=g-import-not-at-top
  example = jnp.zeros((1, *registry.input_shape(model), 3), jnp.float32)
  init = jax.jit(lambda r: model.init(r, example, train=False))(rng)
  init_3d = conversion.to_pytorch(nn.unbox(init))
  sd3, report = inflate_state_dict(state_dict_2d, init_3d)
  variables = conversion.from_pytorch(sd3, model)
  return variables, report
