"""UCF101: DualFormer-Small fine-tuned from Kinetics-400 (official top-1 97.5).

Frame interval 2; 4 clips x 3 crops at test. Convert or train a Kinetics-400 Small
first, build the dataset (docs/data.md), then:

    python train.py --config configs/ucf101.py --workdir workdir/ucf101 \
        --config.data.data_dir=DATA_DIR --config.init_from=checkpoints/small_k400
"""

from dualformer_jax import config_base


def get_config():
  return config_base.finetune_recipe('ucf101_video/split1', frame_interval=2)
