"""Token Labelling (official DualFormer `Recognizer3D_TL`): a student trained on its video
label plus dense soft targets from a frozen teacher's per-token predictions.

    head = TokenLabellingHead(num_classes=400)
    cls_logits, token_logits = head.apply(variables, features)   # [b, K], [b, d, h, w, K]
    targets = soft_targets(teacher_token_logits, grid=token_logits.shape[1:4])
    total, cls_part, token_part = loss(cls_logits, token_logits, targets, labels)

The teacher (`teacher.py`), the training step (`train_step.py`) and the offline
annotation (`python -m dualformer_jax.token_labelling annotate`) import the model zoo
and are imported from their modules. See docs/token_labelling.md.
"""

from dualformer_jax.token_labelling.conversion import head_variables_from_pytorch
from dualformer_jax.token_labelling.conversion import head_variables_to_pytorch
from dualformer_jax.token_labelling.head import TokenLabellingHead
from dualformer_jax.token_labelling.losses import loss
from dualformer_jax.token_labelling.losses import soft_cross_entropy
from dualformer_jax.token_labelling.targets import mask_top_k
from dualformer_jax.token_labelling.targets import soft_targets
from dualformer_jax.token_labelling.targets import temporal_average
