"""DualFormer (ECCV 2022): local window and global pyramid attention over space-time.

Modules in `model.py` and `attention.py`, the variants table in `variants.py`, the
official checkpoint layout in `conversion.py`, the FLOPs count in `flops.py`.
"""

from dualformer_jax.models import registry
from dualformer_jax.models.dualformer import conversion
from dualformer_jax.models.dualformer import flops
from dualformer_jax.models.dualformer import variants
from dualformer_jax.models.dualformer.attention import GlobalPyramidAttention
from dualformer_jax.models.dualformer.attention import LocalWindowAttention
from dualformer_jax.models.dualformer.model import Block
from dualformer_jax.models.dualformer.model import ClassificationHead
from dualformer_jax.models.dualformer.model import COARSE_STAGES
from dualformer_jax.models.dualformer.model import DualFormer
from dualformer_jax.models.dualformer.model import DualFormerBackbone
from dualformer_jax.models.dualformer.model import pyramid_kernels
from dualformer_jax.models.dualformer.model import stage_resolutions

# Layer kinds of a profiled step, by the layer path in XLA's op_name (first match wins).
PROFILE_CATEGORIES = (
    ('dropout / drop-path rng', r'(DropPath|Dropout|bernoulli|threefry)'),
    ('attention projections', r'/attn/(qkv|q|kv|proj)/'),
    ('attention pooling (sr, lr)', r'/attn/(sr|lr)'),
    ('attention core', r'/attn/'),
    ('mlp dense (fc1, fc2)', r'/mlp/fc[12]/'),
    ('mlp gelu', r'/mlp/'),
    ('layer norm', r'/norm\d*/'),
    ('peg (depthwise 3x3x3)', r'/pos_block'),
    ('patch embedding', r'/patch_embed'),
    ('head + loss', r'(/head/|loss_fn|log_softmax|softmax_cross_entropy)'),
    ('residual adds, reshapes', r'/block_'),
)

FAMILY = registry.register(registry.Family(
    name='dualformer',
    module=DualFormer,
    variants=variants.VARIANTS,
    architecture_fields=variants.ARCHITECTURE_FIELDS,
    from_pytorch=conversion.from_pytorch,
    to_pytorch=conversion.to_pytorch,
    count_flops=flops.flops_by_kind,
    infer_variant=conversion.infer_variant,
    profile_categories=PROFILE_CATEGORIES,
    official={name: {'backbone_params': variants.OFFICIAL_BACKBONE_PARAMS[name],
                     'gflops': variants.OFFICIAL_GFLOPS[name],
                     'gflops_input': (32, 224, 224),
                     'k400_top1': variants.OFFICIAL_K400_TOP1[name]}
              for name in variants.OFFICIAL_GFLOPS},
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
    head_prefix=conversion.HEAD_PREFIX,
    param_name=lambda path: conversion.official_key(path)[0],
))
