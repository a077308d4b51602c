"""LVT checkpoints: the name map to the official (SlowFast `XVIT`) state dict, both ways.

Each Flax leaf maps to one official key plus a layout transform (a small table of
regular expressions over the Flax path). The unused official `new_fc` is a parameter of
the model (`head/new_fc`, an `UnusedLinear`), so an import followed by an export gives
back every tensor bit for bit; `reinit_head` re-draws it with the classifier when the
class count changes.
"""

import logging
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models import conversion_rules as rules
from dualformer_jax.models import registry
from dualformer_jax.models.conversion_rules import CONV2D
from dualformer_jax.models.conversion_rules import IDENTITY
from dualformer_jax.models.conversion_rules import LINEAR
from dualformer_jax.models.conversion_rules import Transform
from dualformer_jax.models.lvt import model as lvt_model
from dualformer_jax.models.lvt import variants

log = logging.getLogger(__name__)

# Depthwise Conv2d: torch (c, 1, kh, kw) <-> flax (kh, kw, c).
DEPTHWISE2D = Transform('depthwise2d', lambda k: k.transpose(2, 0, 1)[:, None],
                        lambda w: w[:, 0].transpose(1, 2, 0))
# Temporal embedding: torch (1, frames, 1, c) <-> flax (frames, c).
TEMP_EMBED = Transform('temp_embed', lambda e: e[None, :, None, :], lambda w: w[0, :, 0, :])

_LEAF_NAMES = {'scale': 'weight', 'bias': 'bias', 'kernel': 'weight'}

_BLOCK = r'backbone/block_(\d+)'
# Flax module path (without the leaf) -> (torch module path, transform of 'kernel').
_MODULE_RULES: list[tuple[str, str, Transform]] = [
    (r'backbone/patch_embed', r'base_model.patch_embed.proj', CONV2D),
    (r'backbone/patch_embed/norm', r'base_model.patch_embed.norm', IDENTITY),
    (_BLOCK + r'/(temporal_norm1|norm1|norm2)', r'base_model.blocks.\1.\2', IDENTITY),
    (_BLOCK + r'/(temporal_attn|attn)/(qkv|proj|q_gate|k_gate|pgate)',
     r'base_model.blocks.\1.\2.\3', LINEAR),
    (_BLOCK + r'/mlp/(fc1|fc2)', r'base_model.blocks.\1.mlp.\2', LINEAR),
    (_BLOCK + r'/mlp/dwconv', r'base_model.blocks.\1.mlp.dwconv.dwconv', DEPTHWISE2D),
    (r'backbone/norm', r'base_model.norm', IDENTITY),
    (r'head/norm', r'consensus.mlp_head.0', IDENTITY),
    (r'head/fc1', r'consensus.mlp_head.1', LINEAR),
    (r'head/fc2', r'consensus.mlp_head.4', LINEAR),
    (r'head/new_fc', r'new_fc', LINEAR),
]

# The classifier proper: the only head tensors whose shape depends on the class count
# (the official fine-tuning loads by name and shape, so this is what it re-initializes).
HEAD_PREFIX = 'consensus.mlp_head.4.'
HEAD_PATH = ('head', 'fc2')
# Re-drawn with the classifier when they do not fit (or are absent): the rest of the
# head, and the unused `new_fc`.
_REDRAWN_PREFIXES = ('consensus.', 'new_fc.')


def official_key(path: tuple[str, ...]) -> tuple[str, Transform]:
  """Flax variable path (module names then leaf) -> (official key, transform)."""
  if path == ('backbone', 'temp_embed'):
    return 'base_model.temp_embed', TEMP_EMBED
  module, leaf = '/'.join(path[:-1]), path[-1]
  for pattern, replacement, kernel_transform in _MODULE_RULES:
    if re.fullmatch(pattern, module) and leaf in _LEAF_NAMES:
      torch_module = re.sub(pattern, replacement, module)
      transform = kernel_transform if leaf == 'kernel' else IDENTITY
      return f'{torch_module}.{_LEAF_NAMES[leaf]}', transform
  raise KeyError(f'No official name for Flax variable {"/".join(path)!r}')


def _fresh_head(model: lvt_model.LinearVideoTransformer, rng: jax.Array) -> dict[str, Any]:
  """Newly initialized `head` parameters, `new_fc` included (official init)."""
  head = lvt_model.VVTHead(model.num_classes, model.head_mlp_dim, model.head_dropout_rate,
                           model.dtype, model.param_dtype)
  frames = jnp.zeros((1, 1, model.embed_dim), model.dtype)
  return jax.jit(lambda: rules.init_submodule(head, frames, rng))()


def from_pytorch(state_dict: Mapping[str, np.ndarray],
                 model: lvt_model.LinearVideoTransformer, *, reinit_head: bool = False,
                 rng: jax.Array | None = None) -> dict[str, Any]:
  """Official state dict (`base_model.*`, `consensus.*`, `new_fc.*`) -> Flax variables.

  With `reinit_head`, a classifier (`consensus.mlp_head.4`) that does not fit
  `model.num_classes` is re-initialized, and so are `new_fc` and any other head tensor
  that is absent or does not fit (logged); the backbone is always loaded strictly.
  """
  rng = rng if rng is not None else jax.random.PRNGKey(0)
  shapes = registry.variable_shapes(model)
  state_dict = dict(state_dict)
  fresh = None
  if reinit_head:
    fresh = _fresh_head(model, rng)
    fresh_sd = rules.export_state_dict({'params': {'head': fresh}}, official_key)
    redrawn = [k for k, v in fresh_sd.items()
               if k.startswith(_REDRAWN_PREFIXES) and not k.startswith(HEAD_PREFIX)
               and (k not in state_dict or tuple(state_dict[k].shape) != v.shape)]
    if redrawn:
      log.warning('Re-initializing %s (absent from the checkpoint or not fitting the model).',
                  ', '.join(redrawn))
    state_dict.update({k: fresh_sd[k] for k in redrawn})
  return rules.load_variables(state_dict, shapes, official_key, head_prefix=HEAD_PREFIX,
                              reinit_head=reinit_head, init_head=lambda: fresh['fc2'],
                              head_path=HEAD_PATH)


def to_pytorch(variables: Mapping[str, Any],
               model: lvt_model.LinearVideoTransformer | None = None) -> dict[str, np.ndarray]:
  """Flax variables -> the official state dict (`new_fc` included); checked against
  `model` if given."""
  if model is not None:
    rules.check_structure(variables, registry.variable_shapes(model))
  return rules.export_state_dict(variables, official_key)


def infer_variant(state_dict: Mapping[str, Any]) -> str:
  """The variant whose architecture an official state dict has.

  Width, depth, gate sharing and head width are read from the tensors; the temporal
  shift settings are not in the weights, so Kinetics-600 and SSv2 (both sharing the
  gate) are told apart by their class counts.
  """
  patch = state_dict.get('base_model.patch_embed.proj.weight')
  if patch is None:
    raise ValueError('the state dict has no base_model.patch_embed.proj.weight: is it an '
                     f'LVT checkpoint? (LVT variants: {sorted(variants.VARIANTS)})')
  blocks = {k.split('.')[2] for k in state_dict if k.startswith('base_model.blocks.')}
  found = dict(embed_dim=int(patch.shape[0]), depth=len(blocks),
               share_gate=any('.pgate.' in k for k in state_dict))
  hidden = state_dict.get('consensus.mlp_head.1.weight')
  if hidden is not None:
    found['head_mlp_dim'] = int(hidden.shape[0])
  candidates = [name for name, kwargs in variants.VARIANTS.items()
                if all(kwargs[k] == v for k, v in found.items())]
  classifier = state_dict.get(HEAD_PREFIX + 'weight')
  if len(candidates) > 1 and classifier is not None:
    by_classes = [n for n in candidates
                  if variants.OFFICIAL.get(n, {}).get('classes') == classifier.shape[0]]
    candidates = by_classes or candidates
  if len(candidates) == 1:
    return candidates[0]
  why = ('the shift settings are not stored in the weights, and the class count does '
         'not tell') if candidates else 'no variant has this architecture'
  raise ValueError(f'cannot tell the LVT variant of this state dict ({found}): {why}; '
                   f'pass --variant (one of {sorted(candidates or variants.VARIANTS)}).')
