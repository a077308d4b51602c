"""Something-Something v2: our recipe (there is no official one).

Small fine-tuned from Kinetics-400. The classes are about direction and order of motion,
so there are no flips; label smoothing 0.1, learning rate 5e-4, weight decay 0.05,
30 epochs with 2.5 of warm-up, validation on 1 clip and test on 2 clips x 3 crops.

    python train.py --config configs/ssv2.py --workdir workdir/ssv2 \
        --config.data.data_dir=DATA_DIR --config.init_from=checkpoints/small_k400
"""

from dualformer_jax import config_base


def get_config():
  c = config_base.finetune_recipe('something_something_v2_video', frame_interval=2)
  c.data.eval_split = 'validation'
  c.data.flip = False
  c.data.eval_num_clips, c.data.eval_num_crops = 2, 3
  c.train.learning_rate, c.train.weight_decay = 5e-4, 0.05
  c.train.warmup_epochs = 2.5
  c.train.label_smoothing = 0.1
  return c
