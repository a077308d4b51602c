"""The name map between Flax variables and the official PyTorch state dict.

Each Flax leaf `(collection, path)` maps to one official key plus a layout transform
with two directions (`to_torch`, `to_flax`). The rules are a small table of regular
expressions over the Flax path; everything else follows from it.
"""

import dataclasses
import re
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Transform:
  """A layout change between a PyTorch tensor and a Flax array (both directions)."""
  name: str
  to_torch: Callable[[np.ndarray], np.ndarray]
  to_flax: Callable[[np.ndarray], np.ndarray]


IDENTITY = Transform('identity', lambda a: a, lambda a: a)
# Linear: torch (out, in) <-> flax (in, out).
LINEAR = Transform('linear', lambda k: k.T, lambda w: w.T)
# Conv3d: torch (out, in, kd, kh, kw) <-> flax (kd, kh, kw, in, out).
CONV = Transform('conv', lambda k: k.transpose(4, 3, 0, 1, 2),
                 lambda w: w.transpose(2, 3, 4, 1, 0))
# Depthwise Conv3d: torch (c, 1, kd, kh, kw) <-> flax (kd, kh, kw, c).
DEPTHWISE = Transform('depthwise', lambda k: k.transpose(3, 0, 1, 2)[:, None],
                      lambda w: w[:, 0].transpose(1, 2, 3, 0))
# BatchNorm's counter: torch int64 <-> flax int32.
COUNTER = Transform('counter', lambda a: a.astype(np.int64), lambda a: a.astype(np.int32))

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
