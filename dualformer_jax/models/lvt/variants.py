"""LVT variants in one table (read by `models.create_model`) and the official facts."""

from typing import Any

# The paper's model (XVIT with the `lvit_v2_base_patch16_224_in21k_finetune1k` backbone).
_OFFICIAL_COMMON = dict(
    video_size=(16, 224, 224),
    patch_size=16,
    patch_stride=14,
    patch_padding=8,
    embed_dim=512,
    depth=12,
    num_heads=8,
    mlp_ratio=4.0,
    qkv_bias=True,
    temp_embed_frames=8,
    shift_size=1,
    head_mlp_dim=768,
)
# The golden file's configurations: width 64, depth 2, 4 heads of 16, 16 x 64 x 64 clips.
_MINI = dict(_OFFICIAL_COMMON, video_size=(16, 64, 64), embed_dim=64, depth=2, num_heads=4,
             head_mlp_dim=96)

VARIANTS: dict[str, dict[str, Any]] = {
    'lvt_k400': dict(_OFFICIAL_COMMON, share_gate=False, shift_div=8, num_segments=8),
    'lvt_k600': dict(_OFFICIAL_COMMON, share_gate=True, shift_div=8, num_segments=8),
    'lvt_ssv2': dict(_OFFICIAL_COMMON, share_gate=True, shift_div=4, num_segments=16),
    'lvt_mini': dict(_MINI, share_gate=False, shift_div=8, num_segments=4),
    'lvt_mini_sharegate': dict(_MINI, share_gate=True, shift_div=4, num_segments=16),
    # Not official: the default run's model (configs/default.py:lvt), 8 x 64 x 64 clips
    # (a 5 x 5 token grid), the K400 rules (separate gates, shift_div 8, 8-frame segments).
    # Its Linear init std is the official 0.02 scaled by sqrt(512 / 64): q and k then start
    # at the 512-wide model's scale (std 0.45; 0.16 with 0.02, below the feature map's offset
    # 32^-0.5 = 0.18, where attention averages uniformly; docs/model_families.md).
    'lvt_nano': dict(_OFFICIAL_COMMON, video_size=(8, 64, 64), embed_dim=64, depth=3,
                     num_heads=2, head_mlp_dim=96, share_gate=False, shift_div=8,
                     num_segments=8, linear_init_std=0.02 * (512 / 64) ** 0.5),
}

_CONFIGS = 'configs/Kinetics/lxvitv2_B16_16x16_{}_21k_cgate_tempshift_spatialshift.yaml'

# From the official code (commit 185d74a): parameters with and without the unused
# `new_fc`, fvcore GFLOPs per 16x224x224 view, test views and GFLOPs x views.
OFFICIAL: dict[str, dict[str, Any]] = {
    'lvt_k400': dict(dataset='Kinetics-400', classes=400, params=52_594_720,
                     params_used=52_389_520, gflops=265.12, gflops_input=(16, 224, 224),
                     test_views=12, gflops_views=3181, config=_CONFIGS.format('k400')),
    'lvt_k600': dict(dataset='Kinetics-600', classes=600, params=52_554_672,
                     params_used=52_246_872, gflops=265.12, gflops_input=(16, 224, 224),
                     test_views=12, gflops_views=3181, config=_CONFIGS.format('k600')),
    'lvt_ssv2': dict(dataset='Something-Something v2', classes=174, params=52_008_540,
                     params_used=51_919_278, gflops=265.12, gflops_input=(16, 224, 224),
                     test_views=6, gflops_views=1591, config='configs/SSv2/lxvitv2_B16_16x16.yaml'),
}

# Parameters of the golden file's configurations (10 classes).
MINI_PARAMS = {'lvt_mini': 202_868, 'lvt_mini_sharegate': 199_732}

# The official input normalization, `(x / 255 - 0.5) / 0.5`, on a 0-255 scale.
MEAN = (127.5, 127.5, 127.5)
STD = (127.5, 127.5, 127.5)

# Architecture fields that define an LVT (stored with checkpoints).
ARCHITECTURE_FIELDS = (
    'num_classes', 'video_size', 'patch_size', 'patch_stride', 'patch_padding', 'embed_dim',
    'depth', 'num_heads', 'mlp_ratio', 'qkv_bias', 'temp_embed_frames', 'share_gate',
    'shift_div', 'num_segments', 'shift_size', 'head_mlp_dim')
