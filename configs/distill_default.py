"""Token Labelling on the default run's dataset: the default run's DualFormer-nano,
frozen, labels every token of each clip for a fresh nano student.

Train the teacher first (configs/default.py), then the student:

    python train.py --config configs/default.py --workdir workdir/default
    python train.py --config configs/distill_default.py --workdir workdir/distill_default

The argument names another teacher (a run's `checkpoints` directory, whose latest step is
used, a step or model checkpoint directory, or an official `.pth` with the same classes):
`--config configs/distill_default.py:workdir/default/checkpoints/384`.

The teacher's per-token logits are its own classifier `fc_cls` applied to every token of
its last feature map, exactly how the official teacher head (`I3DHead_Teacher`) makes
them from a plain DualFormer checkpoint; the student has the Token Labelling head and is
trained with the official loss (gamma 0.5, top-5 soft targets, here on 8 classes). Same
data, schedule and regularization as configs/default.py (head and token dropout 0, as
the default run's head dropout); the measured result is in docs/token_labelling.md.
"""

from configs import default

TEACHER = 'workdir/default/checkpoints'  # where configs/default.py's run writes


def get_config(teacher=TEACHER):
  c = default.get_config('dualformer')
  tl = c.token_labelling
  tl.teacher = teacher
  tl.teacher_variant = ''  # our checkpoint stores its architecture
  tl.gamma = 0.5
  tl.top_k = 5
  tl.token_dropout_rate = 0.0
  return c
