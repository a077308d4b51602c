"""Model families, one folder each, found through one registry (`registry.py`).

    model = models.create_model('tiny', num_classes=400)      # any family's variant
    family = models.family_of(model)                           # its conversion, FLOPs, ...

Families: `dualformer/` (DualFormer). Shared building blocks: `layers.py`; shared
checkpoint-conversion machinery: `conversion_rules.py`.
"""

from dualformer_jax.models import registry
from dualformer_jax.models.registry import all_variants
from dualformer_jax.models.registry import create_model
from dualformer_jax.models.registry import families
from dualformer_jax.models.registry import Family
from dualformer_jax.models.registry import family_of
from dualformer_jax.models.registry import family_of_variant
from dualformer_jax.models.registry import input_shape
from dualformer_jax.models.registry import model_config
from dualformer_jax.models.registry import model_from_config
from dualformer_jax.models.registry import UnknownVariantError
from dualformer_jax.models.registry import variable_shapes
from dualformer_jax.models.registry import variant_kwargs

# Each import registers its family.
from dualformer_jax.models import dualformer  # noqa: F401  (registers the family)
from dualformer_jax.models import lvt  # noqa: F401  (registers the family)
from dualformer_jax.models import mobile_former  # noqa: F401  (registers the family)

# DualFormer's names, as before families existed.
from dualformer_jax.models.dualformer import Block
from dualformer_jax.models.dualformer import ClassificationHead
from dualformer_jax.models.dualformer import DualFormer
from dualformer_jax.models.dualformer import DualFormerBackbone
from dualformer_jax.models.dualformer import GlobalPyramidAttention
from dualformer_jax.models.dualformer import LocalWindowAttention
from dualformer_jax.models.dualformer import stage_resolutions
from dualformer_jax.models.dualformer.variants import OFFICIAL_BACKBONE_PARAMS
from dualformer_jax.models.dualformer.variants import OFFICIAL_GFLOPS
from dualformer_jax.models.dualformer.variants import OFFICIAL_K400_TOP1
from dualformer_jax.models.dualformer.variants import VARIANTS
