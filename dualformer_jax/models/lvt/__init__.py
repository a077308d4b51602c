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

FAMILY = registry.register(registry.Family(
    name='lvt',
    module=LinearVideoTransformer,
    variants=variants.VARIANTS,
    architecture_fields=variants.ARCHITECTURE_FIELDS,
    from_pytorch=conversion.from_pytorch,
    to_pytorch=conversion.to_pytorch,
    count_flops=flops.flops_by_kind,
    infer_variant=conversion.infer_variant,
    official=variants.OFFICIAL,
    mean=variants.MEAN,
    std=variants.STD,
    head_prefix=conversion.HEAD_PREFIX,
    head_module='head',
    param_name=lambda path: conversion.official_key(path)[0],
))
