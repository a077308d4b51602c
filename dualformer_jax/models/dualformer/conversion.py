"""DualFormer checkpoints: the name map to the official (mmaction2) state dict, both ways.

Each Flax leaf `(collection, path)` maps to one official key plus a layout transform
with two directions (`to_torch`, `to_flax`). The rules are a small table of regular
expressions over the Flax path; everything else follows from it.
"""

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from dualformer_jax.models import conversion_rules as rules
from dualformer_jax.models import registry
from dualformer_jax.models.conversion_rules import CONV3D as CONV
from dualformer_jax.models.conversion_rules import COUNTER
from dualformer_jax.models.conversion_rules import DEPTHWISE3D as DEPTHWISE
from dualformer_jax.models.conversion_rules import IDENTITY
from dualformer_jax.models.conversion_rules import LINEAR
from dualformer_jax.models.conversion_rules import Transform
from dualformer_jax.models.dualformer import model as dualformer_model
from dualformer_jax.models.dualformer import variants


_LEAF_NAMES = {
    # (module kind, flax leaf name) -> torch leaf name
    'scale': 'weight', 'bias': 'bias', 'kernel': 'weight',
    'mean': 'running_mean', 'var': 'running_var',
    'num_batches_tracked': 'num_batches_tracked',
}

# Flax module path (without the leaf) -> (torch module path, transform of 'kernel').
_MODULE_RULES: list[tuple[str, str, Transform]] = [
    (r'backbone/patch_embed_(\d+)/proj', r'backbone.patch_embeds.\1.proj', CONV),
    (r'backbone/patch_embed_(\d+)/norm', r'backbone.patch_embeds.\1.norm', IDENTITY),
    (r'backbone/pos_block_(\d+)', r'backbone.pos_block.\1.proj.0', DEPTHWISE),
    (r'backbone/block_(\d+)_(\d+)/(norm1|norm2)', r'backbone.blocks.\1.\2.\3', IDENTITY),
    (r'backbone/block_(\d+)_(\d+)/mlp/(fc1|fc2)', r'backbone.blocks.\1.\2.mlp.\3', LINEAR),
    (r'backbone/block_(\d+)_(\d+)/attn/(qkv|q|kv|proj)', r'backbone.blocks.\1.\2.attn.\3',
     LINEAR),
    (r'backbone/block_(\d+)_(\d+)/attn/sr', r'backbone.blocks.\1.\2.attn.sr', DEPTHWISE),
    (r'backbone/block_(\d+)_(\d+)/attn/lr_pool1', r'backbone.blocks.\1.\2.attn.lr.0',
     DEPTHWISE),
    (r'backbone/block_(\d+)_(\d+)/attn/lr_bn', r'backbone.blocks.\1.\2.attn.lr.1', IDENTITY),
    (r'backbone/block_(\d+)_(\d+)/attn/lr_pool2', r'backbone.blocks.\1.\2.attn.lr.3',
     DEPTHWISE),
    (r'backbone/block_(\d+)_(\d+)/attn/norm', r'backbone.blocks.\1.\2.attn.norm', IDENTITY),
    (r'backbone/norm', r'backbone.norm', IDENTITY),
    (r'head/fc_cls', r'cls_head.fc_cls', LINEAR),
    # Token Labelling head (`token_head=True`): the token branch's three Linears.
    (r'head/token_linear_(\d+)', r'cls_head.token_linear.\1', LINEAR),
]


def official_key(path: tuple[str, ...]) -> tuple[str, Transform]:
  """Flax variable path (module names then leaf) -> (official key, transform)."""
  module, leaf = '/'.join(path[:-1]), path[-1]
  for pattern, replacement, kernel_transform in _MODULE_RULES:
    if re.fullmatch(pattern, module):
      torch_module = re.sub(pattern, replacement, module)
      if leaf == 'kernel':
        transform = kernel_transform
      elif leaf == 'num_batches_tracked':
        transform = COUNTER
      else:
        transform = IDENTITY
      return f'{torch_module}.{_LEAF_NAMES[leaf]}', transform
  raise KeyError(f'No official name for Flax variable {"/".join(path)!r}')


HEAD_PREFIX = 'cls_head.'
TEACHER_PREFIX = 'teacher.'  # the frozen teacher inside official Token Labelling checkpoints
TOKEN_BRANCH_PREFIX = 'cls_head.token_linear.'  # the Token Labelling head's token branch


def _init_head(model: dualformer_model.DualFormer, rng: jax.Array) -> dict[str, Any]:
  if model.token_head:  # imported here: the token_labelling package imports the model zoo
    from dualformer_jax.token_labelling import head as token_head
    head = token_head.TokenLabellingHead(model.num_classes, model.head_dropout_rate,
                                         model.token_dropout_rate, model.dtype,
                                         model.param_dtype)
  else:
    head = dualformer_model.ClassificationHead(model.num_classes, model.head_dropout_rate,
                                               model.dtype, model.param_dtype)
  features = jnp.zeros((1, 1, 1, 1, model.embed_dims[-1]), model.dtype)
  return rules.init_submodule(head, features, rng)


def from_pytorch(state_dict: Mapping[str, np.ndarray], model: dualformer_model.DualFormer,
                 *, reinit_head: bool = False, rng: jax.Array | None = None
                 ) -> dict[str, Any]:
  """Official state dict (`backbone.*`, `cls_head.fc_cls.*`) -> Flax variables.

  Official Token Labelling checkpoints load too: their `teacher.*` keys are dropped (one
  message), and so is the token branch `cls_head.token_linear.*` unless `model` has the
  Token Labelling head (`token_head=True`), which reads it.
  """
  rng = rng if rng is not None else jax.random.PRNGKey(0)
  dropped = [k for k in state_dict if k.startswith(TEACHER_PREFIX)]
  if dropped:
    rules.log.warning('Token Labelling checkpoint: dropped its %d teacher.* tensors (the '
                      'frozen teacher; not part of the model).', len(dropped))
  ignore_branch = not model.token_head
  branch = [k for k in state_dict if k.startswith(TOKEN_BRANCH_PREFIX)]
  if branch and ignore_branch:
    rules.log.warning('Token Labelling checkpoint: dropped its %d cls_head.token_linear.* '
                      'tensors (the token branch; this model has the plain head).',
                      len(branch))
  ignore = lambda k: k.startswith(TEACHER_PREFIX) or (
      ignore_branch and k.startswith(TOKEN_BRANCH_PREFIX))
  return rules.load_variables(state_dict, registry.variable_shapes(model), official_key,
                              head_prefix=HEAD_PREFIX, reinit_head=reinit_head,
                              init_head=lambda: _init_head(model, rng), ignore=ignore)


def to_pytorch(variables: Mapping[str, Any],
               model: dualformer_model.DualFormer | None = None) -> dict[str, np.ndarray]:
  """Flax variables -> the official state dict; checked against `model` if given."""
  if model is not None:
    rules.check_structure(variables, registry.variable_shapes(model))
  return rules.export_state_dict(variables, official_key)


def infer_variant(state_dict: Mapping[str, Any]) -> str:
  """The variant whose widths and depths an official state dict has."""
  dims, depths = [], []
  for i in range(4):
    weight = state_dict.get(f'backbone.patch_embeds.{i}.proj.weight')
    if weight is None:
      raise ValueError('the state dict has no backbone.patch_embeds.*: is it a DualFormer '
                       'checkpoint?')
    dims.append(int(weight.shape[0]))
    blocks = {k.split('.')[3] for k in state_dict if k.startswith(f'backbone.blocks.{i}.')}
    depths.append(len(blocks))
  for name, kwargs in variants.VARIANTS.items():
    if tuple(kwargs['embed_dims']) == tuple(dims) and tuple(kwargs['depths']) == tuple(depths):
      return name
  raise ValueError(f'no DualFormer variant has embed_dims {tuple(dims)} and depths '
                   f'{tuple(depths)}: pass --variant (one of {sorted(variants.VARIANTS)}).')
