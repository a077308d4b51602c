"""`configs/default.py:lvt` trains LVT-nano end to end, briefly, on a tiny synthetic set."""

import json
import math
import pathlib

import numpy as np
import pytest

from configs import default as default_config
from dualformer_jax import data
from dualformer_jax import model_checkpoint
from dualformer_jax import models
from dualformer_jax import train_lib


def test_default_lvt_config_matches_its_model():
  c = default_config.get_config('lvt')
  model = train_lib.build_model(c, num_classes=8)
  assert models.family_of(model).name == 'lvt' and c.model.variant == 'lvt_nano'
  # LVT takes clips of exactly its video_size; the direction of motion is the class.
  assert tuple(model.video_size) == (c.data.clip_len, c.data.crop_size, c.data.crop_size)
  assert c.data.eval_crop_size == c.data.crop_size and not c.data.flip
  with pytest.raises(ValueError, match='choose one of'):
    default_config.get_config('lvtt')


def test_default_lvt_trains_two_steps_and_evaluates(tmp_path):
  data_dir = tmp_path / 'data'
  name = data.ensure_synthetic_dataset(data_dir, num_videos_per_class_train=2,
                                       num_videos_per_class_test=1, num_frames=16,
                                       num_workers=1)
  c = default_config.get_config('lvt')
  c.data.update(name=name, data_dir=str(data_dir), synthetic=False, eval_num_clips=1)
  c.train.update(num_steps=2, log_every_steps=1)
  c.eval.update(batch_size=8, every_steps=0)
  c.checkpoint.async_save = False
  workdir = tmp_path / 'work'
  result = train_lib.train_and_evaluate(c, str(workdir))

  rows = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  losses = [r['loss'] for r in rows if 'loss' in r]
  assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
  assert result['step'] == 2 and 0.0 <= result['top1'] <= 100.0
  model, variables = model_checkpoint.load_model(workdir / 'checkpoints' / '2')
  assert models.family_of(model).name == 'lvt' and model.embed_dim == 64
  assert np.all(np.isfinite(np.asarray(variables['params']['head']['fc2']['kernel'])))
  assert pathlib.Path(workdir / 'checkpoints').is_dir()
