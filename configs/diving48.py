"""Diving-48: DualFormer-Small fine-tuned from Kinetics-400, the official recipe (top-1 81.8).

32 frames at interval 4, Norm-C input normalization, 30 epochs, 64 clips per step.
Validation: 4 clips x centre crop at short side 256. Convert or train a Kinetics-400
Small first, build the dataset (docs/data.md), then:

    python train.py --config configs/diving48.py --workdir workdir/diving48 \
        --config.data.data_dir=DATA_DIR --config.init_from=checkpoints/small_k400

The official test (4 clips x 3 crops at short side 224):

    python train.py --config configs/diving48.py --workdir workdir/diving48 --mode eval \
        --config.data.data_dir=DATA_DIR --config.data.eval_num_crops=3 \
        --config.data.eval_short_side=224
"""

from dualformer_jax import config_base


def get_config():
  c = config_base.finetune_recipe('diving48_video', 'small')
  c.model.drop_path_rate = 0.2
  c.train.weight_decay = 0.02
  c.train.num_epochs = 30.0
  c.train.batch_size, c.train.grad_accum_steps = 64, 1
  return c
