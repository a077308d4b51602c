"""Linear Video Transformer with Feature Fixation (LVT, Lu et al. 2022, arXiv 2210.08164).

Modules in `model.py`, `attention.py` (linear attention with the feature-fixation gate)
and `shifts.py` (the temporal and spatial shifts); official initializers in
`initializers.py`; the variants table and official facts in `variants.py`; the official
checkpoint layout in `conversion.py`; the FLOPs count in `flops.py`.
"""

from dualformer_jax.models import registry
from dualformer_jax.models.lvt import conversion
from dualformer_jax.models.lvt import flops
from dualformer_jax.models.lvt import variants
from dualformer_jax.models.lvt.attention import LinearAttention
from dualformer_jax.models.lvt.model import Block
from dualformer_jax.models.lvt.model import DWConv
from dualformer_jax.models.lvt.model import LinearVideoTransformer
from dualformer_jax.models.lvt.model import LVTBackbone
from dualformer_jax.models.lvt.model import Mlp
from dualformer_jax.models.lvt.model import PatchEmbed
from dualformer_jax.models.lvt.model import UnusedLinear
from dualformer_jax.models.lvt.model import VVTHead

# Layer kinds of a profiled step, by the layer path in XLA's op_name (first match wins).
PROFILE_CATEGORIES = (
    ('dropout / drop-path rng', r'(DropPath|Dropout|bernoulli|threefry)'),
    ('attention projections (qkv, proj)', r'attn/(qkv|proj)/'),
    ('feature-fixation gates', r'attn/(q_gate|k_gate|pgate)/'),
    ('shifts (temporal, spatial)', r'attn/.*(shift|roll|concatenate|pad)'),
    ('linear attention core', r'attn/'),
    ('mlp dense (fc1, fc2)', r'/mlp/fc[12]/'),
    ('mlp depthwise conv', r'/mlp/dwconv'),
    ('mlp gelu', r'/mlp/'),
    ('layer norm', r'norm\d*/'),
    ('patch + temporal embedding', r'(/patch_embed|time_embed|temporal_embed)'),
    ('head + loss', r'(/head/|loss_fn|log_softmax|softmax_cross_entropy)'),
    ('residual adds, reshapes', r'/block_'),
)

FAMILY = registry.register(registry.Family(
    name='lvt',
    module=LinearVideoTransformer,
    variants=variants.VARIANTS,
    architecture_fields=variants.ARCHITECTURE_FIELDS,
    from_pytorch=conversion.from_pytorch,
    to_pytorch=conversion.to_pytorch,
    count_flops=flops.flops_by_kind,
    infer_variant=conversion.infer_variant,
    profile_categories=PROFILE_CATEGORIES,
    official=variants.OFFICIAL,
    mean=variants.MEAN,
    std=variants.STD,
    head_prefix=conversion.HEAD_PREFIX,
    head_module='head',
    param_name=lambda path: conversion.official_key(path)[0],
))
