"""Mobile-Former checkpoints: the name map to the official state dict, both ways.

Each Flax leaf maps to one official key (AAboys/MobileFormer naming) and a layout
transform; the rules are a small table of regular expressions over the Flax module
path. The video model uses the same names with 3D kernels `(O, I/g, kt, kh, kw)`. An
image state dict given to the video model is inflated first (`inflation.py`).
"""

import functools
import logging
import re
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models import conversion_rules as rules
from dualformer_jax.models import registry
from dualformer_jax.models.conversion_rules import COUNTER
from dualformer_jax.models.conversion_rules import CONV2D
from dualformer_jax.models.conversion_rules import CONV3D
from dualformer_jax.models.conversion_rules import IDENTITY
from dualformer_jax.models.conversion_rules import LINEAR
from dualformer_jax.models.conversion_rules import Transform
from dualformer_jax.models.mobile_former import blocks as mf_blocks
from dualformer_jax.models.mobile_former import model as mf_model
from dualformer_jax.models.mobile_former import variants

log = logging.getLogger(__name__)

# The model's variables as ShapeDtypeStructs, traced once per distinct model (a trace
# costs seconds; modules are hashable). Callers must not modify the returned tree.
variable_shapes = functools.lru_cache(maxsize=32)(registry.variable_shapes)

# The classifier's last Linear: what `reinit_head` replaces for a new class count.
HEAD_PREFIX = 'classifier.classifier.'
HEAD_PATH = ('head', 'classifier')

_LEAF_NAMES = {
    'kernel': 'weight', 'scale': 'weight', 'bias': 'bias',
    'mean': 'running_mean', 'var': 'running_var',
    'num_batches_tracked': 'num_batches_tracked',
}
_BLOCK = r'features_(\d+)'

# Flax module path -> (official module path, kind); kind 'conv', 'linear' or 'norm'.
_MODULE_RULES: list[tuple[str, str, str]] = [
    (r'stem/conv', r'stem.0', 'conv'),
    (r'stem/bn', r'stem.1', 'norm'),
    # bneck-lite: conv.0 depthwise, conv.1 BN, (2 ReLU6, 3 shuffle), conv.4 pointwise, conv.5 BN.
    (rf'{_BLOCK}/dw/conv', r'features.\1.conv.0', 'conv'),
    (rf'{_BLOCK}/dw/bn', r'features.\1.conv.1', 'norm'),
    (rf'{_BLOCK}/pw/conv', r'features.\1.conv.4', 'conv'),
    (rf'{_BLOCK}/pw/bn', r'features.\1.conv.5', 'norm'),
    # Mobile-Former blocks: convN.0 conv, convN.1 BN; hyperN.hyper.{0,2} the DyReLU MLP.
    (rf'{_BLOCK}/conv(\d)/conv', r'features.\1.conv\2.0', 'conv'),
    (rf'{_BLOCK}/conv(\d)/bn', r'features.\1.conv\2.1', 'norm'),
    (rf'{_BLOCK}/hyper(\d)/fc1', r'features.\1.hyper\2.hyper.0', 'linear'),
    (rf'{_BLOCK}/hyper(\d)/fc2', r'features.\1.hyper\2.hyper.2', 'linear'),
    # Mobile->Former in a block; the final one is the same at the top level (below).
    (rf'{_BLOCK}/local_global/q', r'features.\1.local_global.q', 'linear'),
    (rf'{_BLOCK}/local_global/gate', r'features.\1.local_global.alpha.0', 'linear'),
    (rf'{_BLOCK}/local_global/proj', r'features.\1.local_global.proj', 'linear'),
    (rf'{_BLOCK}/local_global/norm', r'features.\1.local_global.layer_norm', 'norm'),
    (r'local_global/q', r'local_global.q', 'linear'),
    (r'local_global/gate', r'local_global.alpha.0', 'linear'),
    (r'local_global/proj', r'local_global.proj', 'linear'),
    (r'local_global/norm', r'local_global.layer_norm', 'norm'),
    # Former.
    (rf'{_BLOCK}/global_block/q', r'features.\1.global_block.q', 'linear'),
    (rf'{_BLOCK}/global_block/proj', r'features.\1.global_block.channel_mlp', 'linear'),
    (rf'{_BLOCK}/global_block/norm1', r'features.\1.global_block.layer_norm', 'norm'),
    (rf'{_BLOCK}/global_block/fc1', r'features.\1.global_block.ffn.0', 'linear'),
    (rf'{_BLOCK}/global_block/fc2', r'features.\1.global_block.ffn.2', 'linear'),
    (rf'{_BLOCK}/global_block/norm2', r'features.\1.global_block.ffn_norm', 'norm'),
    # Former->Mobile: `proj` is the value projection.
    (rf'{_BLOCK}/global_local/k', r'features.\1.global_local.k', 'linear'),
    (rf'{_BLOCK}/global_local/v', r'features.\1.global_local.proj', 'linear'),
    # Head (MergeClassifier): conv.0 is the shuffle slot, fc.2 h_swish, classifier.0 dropout.
    (r'head/conv', r'classifier.conv.1', 'conv'),
    (r'head/conv_bn', r'classifier.conv.2', 'norm'),
    (r'head/fc', r'classifier.fc.0', 'linear'),
    (r'head/fc_bn', r'classifier.fc.1', 'norm'),
    (r'head/classifier', r'classifier.classifier.1', 'linear'),
]


def _official_key(path: tuple[str, ...], conv: Transform) -> tuple[str, Transform]:
  if path == ('tokens',):
    return 'tokens.weight', IDENTITY
  module, leaf = '/'.join(path[:-1]), path[-1]
  for pattern, replacement, kind in _MODULE_RULES:
    if re.fullmatch(pattern, module):
      if leaf == 'num_batches_tracked':
        transform = COUNTER
      elif leaf == 'kernel':
        transform = conv if kind == 'conv' else LINEAR
      else:
        transform = IDENTITY
      return f'{re.sub(pattern, replacement, module)}.{_LEAF_NAMES[leaf]}', transform
  raise KeyError(f'No official name for Flax variable {"/".join(path)!r}')


def official_key(path: tuple[str, ...]) -> tuple[str, Transform]:
  """Image model: Flax variable path (modules then leaf) -> (official key, transform)."""
  return _official_key(path, CONV2D)


def official_key_3d(path: tuple[str, ...]) -> tuple[str, Transform]:
  """Video model: the same names, 3D convolution kernels."""
  return _official_key(path, CONV3D)


def official_name(path: tuple[str, ...]) -> str:
  """Flax parameter path -> official parameter name (image and video alike)."""
  return official_key(path)[0]


def key_function(model: mf_model._MobileFormerBase):  # pylint: disable=protected-access
  return official_key_3d if isinstance(model, mf_model.MobileFormer3D) else official_key


def _init_head(model, rng: jax.Array) -> dict[str, Any]:
  """Fresh parameters of the classifier's last Linear (official init)."""
  head = mf_blocks.dense(model.num_classes, ('mlp', 'classes'), 'classifier', model.dtype,
                         model.param_dtype)
  return nn.unbox(head.init(rng, jnp.zeros((1, model.num_features), model.dtype))['params'])


def from_pytorch(state_dict: Mapping[str, np.ndarray], model, *, reinit_head: bool = False,
                 rng: jax.Array | None = None) -> dict[str, Any]:
  """Official state dict -> `{'params', 'batch_stats'}` for `model` (image or video).

  A video model given an image state dict (2D kernels) gets it inflated by the centre
  rule (`inflation.inflate_state_dict`), so a static clip reproduces the image model.
  `reinit_head` replaces `classifier.classifier.1` when its class count differs.
  """
  rng = rng if rng is not None else jax.random.PRNGKey(0)
  if isinstance(model, mf_model.MobileFormer3D) and _is_image_state_dict(state_dict):
    from dualformer_jax.models.mobile_former import inflation  # pylint: disable=g-import-not-at-top
    log.info('Inflating an image Mobile-Former state dict to 3D (centre rule).')
    state_dict = inflation.inflate_state_dict(state_dict, model)
  return rules.load_variables(state_dict, variable_shapes(model), key_function(model),
                              head_prefix=HEAD_PREFIX, reinit_head=reinit_head,
                              init_head=lambda: _init_head(model, rng), head_path=HEAD_PATH)


def to_pytorch(variables: Mapping[str, Any], model=None) -> dict[str, np.ndarray]:
  """Flax variables -> the official state dict; checked against `model` if given."""
  if model is not None:
    rules.check_structure(variables, variable_shapes(model))
  key_fn = key_function(model) if model is not None else _guess_key_function(variables)
  return rules.export_state_dict(variables, key_fn)


def _guess_key_function(variables: Mapping[str, Any]):
  kernel = variables['params']['stem']['conv']['kernel']
  return official_key_3d if np.ndim(kernel) == 5 else official_key


def _is_image_state_dict(state_dict: Mapping[str, Any]) -> bool:
  stem = state_dict.get('stem.0.weight')
  return stem is not None and np.ndim(stem) == 4


def block_widths(stem_channels: int, blocks: tuple[variants.Row, ...]
                 ) -> tuple[tuple[str, int, int, int], ...]:
  """`(kind, first hidden width, c_out, second hidden width or 0)` per block of a table."""
  widths, c_in = [], stem_channels
  for kind, e1, c_out, _, e2 in blocks:
    widths.append((kind, e1 * c_in, c_out, e2 * c_out))
    c_in = c_out
  return tuple(widths)


def state_dict_widths(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """What the shapes of an official state dict (image or video) say about its widths."""
  if 'stem.0.weight' not in state_dict or 'tokens.weight' not in state_dict:
    raise ValueError('the state dict has no stem.0.weight or tokens.weight: is it a '
                     'Mobile-Former checkpoint?')
  out = lambda key: int(np.shape(state_dict[key])[0])
  widths, i = [], 0
  while f'features.{i}.conv.0.weight' in state_dict or f'features.{i}.conv1.0.weight' in state_dict:
    p = f'features.{i}.'
    if p + 'conv.0.weight' in state_dict:
      widths.append(('lite', out(p + 'conv.0.weight'), out(p + 'conv.4.weight'), 0))
    elif p + 'conv4.0.weight' in state_dict:
      widths.append(('mf_down', out(p + 'conv1.0.weight'), out(p + 'conv4.0.weight'),
                     out(p + 'conv3.0.weight')))
    else:
      widths.append(('mf', out(p + 'conv1.0.weight'), out(p + 'conv3.0.weight'), 0))
    i += 1
  pointwise = np.shape(state_dict['features.0.conv.4.weight']) if widths else (0, 1)
  groups = widths[0][1] // pointwise[1] if widths else 1
  return dict(stem_channels=out('stem.0.weight'), widths=tuple(widths),
              tokens=tuple(np.shape(state_dict['tokens.weight'])),
              num_features=out('classifier.fc.0.weight'), groups=groups)


def _infer(state_dict: Mapping[str, Any], table: Mapping[str, Mapping[str, Any]],
           temporal_kernel: int | None) -> str:
  found = state_dict_widths(state_dict)
  for name, kwargs in table.items():
    expected = dict(stem_channels=kwargs['stem_channels'],
                    widths=block_widths(kwargs['stem_channels'], kwargs['blocks']),
                    tokens=(kwargs['num_tokens'], kwargs['token_dim']),
                    num_features=kwargs['num_features'], groups=kwargs['groups'])
    if found == expected and kwargs.get('temporal_kernel', 3) == (temporal_kernel or 3):
      return name
  raise ValueError(f'no Mobile-Former variant has stem {found["stem_channels"]}, tokens '
                   f'{found["tokens"]}, {len(found["widths"])} blocks and groups '
                   f'{found["groups"]}: pass --variant (one of {sorted(table)}).')


def _depthwise_temporal_kernel(state_dict: Mapping[str, Any]) -> int | None:
  """None for an image state dict; else the temporal extent of a block's depthwise conv."""
  if np.ndim(state_dict['stem.0.weight']) == 4:
    return None
  for key in sorted(state_dict):  # conv2 of a stride-1 block, conv1 of a stride-2 block
    if re.fullmatch(r'features\.\d+\.conv[123]\.0\.weight', key):
      weight = np.shape(state_dict[key])
      if weight[1] == 1 and weight[-1] == 3:  # depthwise 3x3
        return int(weight[2])
  return 3


def infer_variant(state_dict: Mapping[str, Any]) -> str:
  """The official image variant whose widths an official state dict has.

  Raises:
    ValueError: for another model's state dict, other widths, or a video state dict.
  """
  if 'stem.0.weight' in state_dict and np.ndim(state_dict['stem.0.weight']) != 4:
    raise ValueError('a state dict with 3D kernels is a Mobile-Former-3D one, not an '
                     'image Mobile-Former')
  return _infer(state_dict, variants.IMAGE_VARIANTS, None)


def infer_variant_3d(state_dict: Mapping[str, Any]) -> str:
  """The Mobile-Former-3D variant whose widths and temporal kernels a state dict has."""
  if 'stem.0.weight' in state_dict and np.ndim(state_dict['stem.0.weight']) != 5:
    raise ValueError('a state dict with 2D kernels is an image Mobile-Former (the video '
                     'variants inflate it: pass --variant mobile_former_3d_...)')
  return _infer(state_dict, variants.VIDEO_VARIANTS, _depthwise_temporal_kernel(state_dict))
