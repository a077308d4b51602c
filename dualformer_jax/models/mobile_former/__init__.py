"""Mobile-Former: the official image model and Mobile-Former-3D, our video reconstruction.

Registers two families with `models.registry`:
- `'mobile_former'`: Mobile-Former (Chen et al., CVPR 2022), the official image model
  (AAboys/MobileFormer), variants `mobile_former_26m` ... `mobile_former_508m`;
- `'mobile_former_3d'`: Mobile-Former-3D, OUR reconstruction of Video Mobile-Former
  (Wang et al., arXiv 2208.12257; no code or architecture details published that we
  could read), variants `mobile_former_3d_xs|s|m|l` and the ablation
  `mobile_former_3d_s_t1`.

    model = models.create_model('mobile_former_294m', num_classes=1000)  # [b, 224, 224, 3]
    video = models.create_model('mobile_former_3d_s', num_classes=400)   # [b, 8, 160, 160, 3]
"""

from dualformer_jax.models import registry
from dualformer_jax.models.mobile_former import conversion
from dualformer_jax.models.mobile_former import flops
from dualformer_jax.models.mobile_former import inflation
from dualformer_jax.models.mobile_former import variants
from dualformer_jax.models.mobile_former.model import MobileFormer
from dualformer_jax.models.mobile_former.model import MobileFormer3D

# ImageNet statistics on a 0-255 scale (official default_cfg: mean 0.485, 0.456, 0.406;
# std 0.229, 0.224, 0.225).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

# Layer kinds of a profiled step, by the layer path in XLA's op_name (first match wins).
# Depthwise convolutions run as shifted sums on CPU (adds, pads, a tap loop), pointwise
# ones as matrix multiplies.
PROFILE_CATEGORIES = (
    ('dropout / drop-path rng', r'(DropPath|Dropout|bernoulli|threefry)'),
    ('batch norm', r'/(bn|conv_bn|fc_bn)/'),
    ('dynamic relu', r'/hyper\d/'),
    ('mobile->former bridge', r'/local_global/'),
    ('former (token attention, ffn)', r'/global_block/'),
    ('former->mobile bridge', r'/global_local/'),
    ('stem conv', r'/stem/'),
    ('pointwise conv', r'/conv/(dot_general|\.\.\.gi,igo)'),
    ('depthwise conv', r'/conv/'),
    ('head + loss', r'(/head/|loss_fn|log_softmax|softmax_cross_entropy)'),
    ('activations, residuals, shuffles', r'/features_\d+/'),
)

# What the image model and its video reconstruction share: the checkpoint naming, the
# FLOPs count, the classifier and the input statistics.
_SHARED = dict(
    from_pytorch=conversion.from_pytorch,
    to_pytorch=conversion.to_pytorch,
    count_flops=flops.count_flops,
    mean=MEAN,
    std=STD,
    head_prefix=conversion.HEAD_PREFIX,
    param_name=conversion.official_name,
    cam_features='head/feature_map',  # the ReLU6'd map the head pools
    profile_categories=PROFILE_CATEGORIES,
)

IMAGE_FAMILY = registry.register(registry.Family(
    name='mobile_former',
    module=MobileFormer,
    variants=variants.IMAGE_VARIANTS,
    architecture_fields=variants.IMAGE_ARCHITECTURE_FIELDS,
    infer_variant=conversion.infer_variant,
    input_shape=lambda m: tuple(m.image_size),
    official=variants.IMAGE_FACTS,
    **_SHARED,
))

VIDEO_FAMILY = registry.register(registry.Family(
    name='mobile_former_3d',
    module=MobileFormer3D,  # input_shape: its video_size (the default clip; any size works)
    variants=variants.VIDEO_VARIANTS,
    architecture_fields=variants.VIDEO_ARCHITECTURE_FIELDS,
    infer_variant=conversion.infer_variant_3d,
    official=variants.VIDEO_FACTS,
    **_SHARED,
))

__all__ = ['MobileFormer', 'MobileFormer3D', 'IMAGE_FAMILY', 'VIDEO_FAMILY', 'conversion',
           'flops', 'inflation', 'variants']
