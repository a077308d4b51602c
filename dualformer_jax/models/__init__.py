"""DualFormer models: Flax linen modules and the official variants."""

from dualformer_jax.models.attention import GlobalPyramidAttention
from dualformer_jax.models.attention import LocalWindowAttention
from dualformer_jax.models.dualformer import Block
from dualformer_jax.models.dualformer import ClassificationHead
from dualformer_jax.models.dualformer import DualFormer
from dualformer_jax.models.dualformer import DualFormerBackbone
from dualformer_jax.models.dualformer import stage_resolutions
from dualformer_jax.models.variants import create_model
from dualformer_jax.models.variants import model_config
from dualformer_jax.models.variants import model_from_config
from dualformer_jax.models.variants import OFFICIAL_BACKBONE_PARAMS
from dualformer_jax.models.variants import OFFICIAL_GFLOPS
from dualformer_jax.models.variants import OFFICIAL_K400_TOP1
from dualformer_jax.models.variants import VARIANTS
from dualformer_jax.models.variants import variant_kwargs
