"""Something-Something v2: our recipe. There is no official DualFormer recipe for SSv2.

Small fine-tuned from Kinetics-400 with the official optimizer semantics (parameter
groups, warm-up from 0.1x, cosine per epoch) and Kinetics input normalization. The
classes are about direction and order of motion, so there are no flips; label smoothing
0.1, learning rate 5e-4, weight decay 0.05, 30 epochs with 2.5 of warm-up, 64 clips per
step, 32 frames at interval 2; validation and test on 2 clips x 3 crops at short side 224.

    python train.py --config configs/ssv2.py --workdir workdir/ssv2 \
        --config.data.data_dir=DATA_DIR --config.init_from=checkpoints/small_k400
"""

from dualformer_jax import config_base


def get_config():
  c = config_base.kinetics_recipe('small', dataset='something_something_v2_video')
  c.model.drop_path_rate = 0.1
  c.data.flip = False
  c.data.eval_num_clips, c.data.eval_num_crops = 2, 3
  c.data.eval_short_side, c.data.eval_crop_size = 224, 224
  c.train.learning_rate, c.train.weight_decay = 5e-4, 0.05
  c.train.num_epochs, c.train.warmup_epochs = 30.0, 2.5
  c.train.batch_size, c.train.grad_accum_steps = 64, 1
  c.train.label_smoothing = 0.1
  c.init_from = 'checkpoints/small_k400'  # e.g. converted with python -m dualformer_jax.convert
  c.eval.every_steps = 1000
  c.eval.batch_size = 16
  return c
