"""The frozen teacher: a DualFormer whose classifier, applied to every token of its last
feature map, gives per-token logits (official `Teacher` + `I3DHead_Teacher`)."""

import dataclasses
import logging
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dualformer_jax import convert
from dualformer_jax import model_checkpoint
from dualformer_jax import models
from dualformer_jax.errors import ConfigError
from dualformer_jax.models.dualformer import conversion as dualformer_conversion
from dualformer_jax.models.dualformer import model as dualformer_model

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Teacher:
  """A loaded teacher.

  Attributes:
    model: a DualFormer built for the student's clips (any head: only `fc_cls` is used).
    variables: its `{'params', 'batch_stats'}` (host arrays).
    source: where it was loaded from.
  """
  model: dualformer_model.DualFormer
  variables: dict[str, Any]
  source: str

  def boxed_shapes(self) -> dict[str, Any]:
    """Its variables as ShapeDtypeStructs with their logical axis names (for sharding)."""
    example = jnp.zeros((1, *models.input_shape(self.model), 3), jnp.float32)
    return jax.eval_shape(lambda: self.model.init(jax.random.PRNGKey(0), example,
                                                  train=False))


def token_grid(model: dualformer_model.DualFormer) -> tuple[int, int, int]:
  """The last stage's token grid `(d, h, w)` of a DualFormer on its `video_size` clips."""
  return tuple(dualformer_model.stage_resolutions(
      model.video_size, model.patch_size, model.temporal_pooling)[-1])


def token_logits(model: nn.Module, variables: dict[str, Any], clips: jax.Array
                 ) -> jax.Array:
  """Eval-mode per-token logits `[b, d, h, w, K]` (float32) of normalized `clips`:
  the backbone's last feature map through the classifier `fc_cls`, without pooling."""
  features = model.apply(variables, clips, train=False,
                         method='extract_features')  # [b, d, h, w, c]
  fc = variables['params']['head']['fc_cls']
  logits = jnp.einsum('bdhwc,ck->bdhwk', features.astype(jnp.float32),
                      fc['kernel'].astype(jnp.float32))
  return logits + fc['bias'].astype(jnp.float32)  # [b, d, h, w, K]


def check_grids(student: nn.Module, teacher: nn.Module) -> None:
  """The teacher's token grid must average onto the student's (same space, a multiple
  of its frames); the official code fails in a reshape or the loss otherwise."""
  s, t = token_grid(student), token_grid(teacher)
  if s[1:] != t[1:] or t[0] % s[0]:
    raise ConfigError(f'the teacher\'s token grid {t} does not map onto the student\'s {s} '
                      '(the spatial grids must agree and the teacher\'s frames be a multiple '
                      'of the student\'s).')


def latest_step(path: str) -> str:
  """A training run's `checkpoints` directory -> its latest step; else `path`."""
  if os.path.isdir(path) and not model_checkpoint.is_model_checkpoint(path):
    steps = [int(p) for p in os.listdir(path) if p.isdigit()]
    if steps:
      return os.path.join(path, str(max(steps)))
  return path


def load_teacher(path: str, *, num_classes: int, video_size: tuple[int, int, int],
                 variant: str = '', dtype: Any = jnp.float32) -> Teacher:
  """A teacher from one of our checkpoints (a directory) or an official `.pth`.

  Args:
    path: a model checkpoint or training step directory (a run's `checkpoints` directory:
      its latest step), or an official DualFormer file
      (`state_dict` entry or bare; an official Token Labelling checkpoint gives its
      student, without `teacher.*` and the token branch).
    num_classes: the student's classes; the teacher's must be the same.
    video_size: the student's clips `(T, H, W)`, which the teacher sees.
    variant: for official files, the expected variant (`''`: inferred from the file).
    dtype: compute dtype.

  Raises:
    ConfigError: missing file, not a DualFormer, another class count or clip size.
  """
  if not path or not os.path.exists(path):
    raise ConfigError(f'config.token_labelling.teacher: {path!r} does not exist.')
  path = latest_step(path)
  if os.path.isdir(path):
    try:
      model, variables = model_checkpoint.load_model(path, dtype=dtype)
    except FileNotFoundError as e:
      raise ConfigError(f'config.token_labelling.teacher: {e}') from None
    if not isinstance(model, dualformer_model.DualFormer):
      raise ConfigError(f'config.token_labelling.teacher: {path} is a '
                        f'{models.family_of(model).name} model; the teacher must be a '
                        'DualFormer.')
    if tuple(model.video_size) != tuple(video_size):
      raise ConfigError(f'config.token_labelling.teacher: {path} is built for clips '
                        f'{tuple(model.video_size)}, the student sees {tuple(video_size)}.')
    classes = model.num_classes
  else:
    state_dict = convert.load_state_dict(path)
    try:
      found = dualformer_conversion.infer_variant(state_dict)
    except ValueError as e:
      raise ConfigError(f'config.token_labelling.teacher: {path}: {e}') from None
    if variant and found != variant:
      raise ConfigError(f'config.token_labelling.teacher: {path} holds a DualFormer-{found}, '
                        f'but config.token_labelling.teacher_variant is {variant!r}.')
    classes = models.registry.head_classes(models.family_of_variant(found), state_dict)
    if classes is None:
      raise ConfigError(f'config.token_labelling.teacher: {path} has no classifier '
                        '(cls_head.fc_cls.*), which gives the token labels.')
  if classes != num_classes:
    raise ConfigError(f'the teacher has {classes} classes and the student {num_classes}: '
                      'Token Labelling needs the same classes.')
  if not os.path.isdir(path):
    model = models.create_model(found, num_classes=classes, video_size=tuple(video_size),
                                drop_path_rate=0.0, head_dropout_rate=0.0, dtype=dtype)
    variables = convert.from_pytorch(state_dict, model)
  variables = jax.device_get({'params': variables['params'],
                              'batch_stats': variables.get('batch_stats') or {}})
  log.info('Token Labelling teacher: DualFormer %s, %d classes, from %s.',
           models.model_config(model)['embed_dims'], classes, path)
  return Teacher(model, variables, path)
