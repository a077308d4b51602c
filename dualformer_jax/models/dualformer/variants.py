"""DualFormer variants in one table (read by `models.create_model`) and official facts."""

from typing import Any

# Shared by the official Tiny, Small and Base (32x224x224 clips).
_OFFICIAL_COMMON = dict(
    video_size=(32, 224, 224),
    patch_size=(2, 4, 4),
    mlp_ratios=(4, 4, 4, 4),
    qkv_bias=True,
    temporal_pooling=(2, 1, 1, 1),
    local_sizes=((8, 7, 7),) * 4,
    fine_pysizes=((8, 7, 7), (8, 7, 7), (8, 7, 7), (16, 7, 7)),
    coarse_pysizes=((4, 4, 4),) * 4,
)

VARIANTS: dict[str, dict[str, Any]] = {
    'tiny': dict(_OFFICIAL_COMMON, embed_dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16),
                 depths=(2, 2, 10, 4)),
    'small': dict(_OFFICIAL_COMMON, embed_dims=(96, 192, 384, 768), num_heads=(3, 6, 12, 24),
                  depths=(2, 2, 18, 2)),
    'base': dict(_OFFICIAL_COMMON, embed_dims=(128, 256, 512, 1024),
                 num_heads=(4, 8, 16, 32), depths=(2, 2, 18, 2)),
    # The configuration of the golden parity file: small, but every path of the model.
    'mini': dict(_OFFICIAL_COMMON, video_size=(8, 224, 224), embed_dims=(16, 32, 48, 64),
                 num_heads=(2, 2, 4, 4), depths=(2, 2, 2, 2), local_sizes=((4, 7, 7),) * 4,
                 fine_pysizes=((2, 7, 7), (2, 7, 7), (2, 7, 7), (4, 7, 7)),
                 coarse_pysizes=((2, 2, 2),) * 4),
    # Not official: a small model for 8x64x64 clips (the default synthetic run, tests).
    'nano': dict(_OFFICIAL_COMMON, video_size=(8, 64, 64), embed_dims=(32, 64, 128, 256),
                 num_heads=(1, 2, 4, 8), depths=(2, 2, 2, 2),
                 local_sizes=((2, 4, 4), (2, 4, 4), (2, 4, 4), (2, 2, 2)),
                 fine_pysizes=((2, 4, 4), (2, 4, 4), (2, 2, 2), (4, 2, 2)),
                 coarse_pysizes=((1, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1))),
}

# Backbone parameter counts of the official models, and GFLOPs per 32x224x224 view.
OFFICIAL_BACKBONE_PARAMS = {'tiny': 21_767_360, 'small': 48_908_064, 'base': 86_837_632}
OFFICIAL_GFLOPS = {'tiny': 60.09, 'small': 158.69, 'base': 267.97}
OFFICIAL_K400_TOP1 = {'tiny': 79.5, 'small': 80.6, 'base': 81.1}


# Architecture fields that define a DualFormer (stored with checkpoints).
ARCHITECTURE_FIELDS = (
    'num_classes', 'video_size', 'patch_size', 'embed_dims', 'num_heads', 'depths',
    'mlp_ratios', 'qkv_bias', 'temporal_pooling', 'local_sizes', 'fine_pysizes',
    'coarse_pysizes', 'token_head')
