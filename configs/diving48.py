"""DIVING48: DualFormer-Small fine-tuned from Kinetics-400 (official top-1 81.8).

Frame interval 4; 4 clips x 3 crops at test. Convert or train a Kinetics-400 Small
first, build the dataset (docs/data.md), then:

    python train.py --config configs/diving48.py --workdir workdir/diving48 \
        --config.data.data_dir=DATA_DIR --config.init_from=checkpoints/small_k400
"""

from dualformer_jax import config_base


def get_config():
  return config_base.finetune_recipe('diving48_video', frame_interval=4)
