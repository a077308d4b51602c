"""The training-recipe pieces of the LVT recipes: mixup and the soft-target loss, segment
sampling, AutoAugment, random erasing, the multi-scale crop, view reduction, and one
pipeline run with all the options on."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dualformer_jax import config_base
from dualformer_jax import data
from dualformer_jax import optim
from dualformer_jax import steps
from dualformer_jax import train_state
from dualformer_jax.data import augment
from dualformer_jax.data import sampling
from dualformer_jax.data import transforms
from dualformer_jax.data.video_io import encode_jpeg
from dualformer_jax.errors import ConfigError

LN2 = math.log(2.0)


# ------------------------------------------------------------------ loss and mixup


def test_cross_entropy_soft_targets_with_smoothing_equals_the_hand_value():
  logits = jnp.log(jnp.array([[1.0, 2.0, 1.0]]))  # softmax [0.25, 0.5, 0.25]
  # mixup targets (0.3 of class 0, 0.7 of class 1), smoothing 0.3 over 3 classes:
  # [0.31, 0.59, 0.1]; loss = 0.41 ln 4 + 0.59 ln 2 = 1.41 ln 2.
  soft = jnp.array([[0.3, 0.7, 0.0]])
  assert float(optim.cross_entropy(logits, soft, 0.3)) == pytest.approx(1.41 * LN2, rel=1e-6)
  # int labels keep working: targets [0.1, 0.8, 0.1] -> 1.2 ln 2.
  assert float(optim.cross_entropy(logits, jnp.array([1]), 0.3)) == pytest.approx(
      1.2 * LN2, rel=1e-6)
  # smoothing of mixed targets = mixing the smoothed losses (the official mixup criterion)
  mixed = 0.3 * optim.cross_entropy(logits, jnp.array([0]), 0.3) + 0.7 * optim.cross_entropy(
      logits, jnp.array([1]), 0.3)
  assert float(mixed) == pytest.approx(1.41 * LN2, rel=1e-6)


def test_mixup_mixes_clips_and_one_hot_labels_with_one_beta_lambda():
  clips = jax.random.normal(jax.random.PRNGKey(1), (6, 2, 3, 3, 3))
  labels = jnp.array([0, 1, 2, 3, 4, 0])
  mix = jax.jit(jax.vmap(steps.mixup, in_axes=(0, None, None)), static_argnums=2)
  all_mixed, all_lams, all_perms = mix(jax.random.split(jax.random.PRNGKey(0), 4000), clips, 0.4)
  mixed, lam, perm = all_mixed[0], float(all_lams[0]), np.asarray(all_perms[0])
  assert 0.0 < lam < 1.0
  assert sorted(perm.tolist()) == list(range(6))
  np.testing.assert_allclose(mixed, lam * clips + (1 - lam) * clips[perm], rtol=1e-5, atol=1e-6)
  targets = np.asarray(steps.mixup_targets(labels, lam, perm, 5))
  np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
  for i in range(6):
    expected = np.zeros(5)
    expected[labels[i]] += lam
    expected[labels[perm[i]]] += 1 - lam
    np.testing.assert_allclose(targets[i], expected, rtol=1e-6)
  # lambda ~ Beta(0.4, 0.4): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 1 / 7.2
  assert float(jnp.mean(all_lams)) == pytest.approx(0.5, abs=0.02)
  assert float(jnp.var(all_lams)) == pytest.approx(1 / 7.2, abs=0.01)


class _Linear(nn.Module):
  """Mean pixel per channel -> Dense: a model whose loss we can recompute."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return nn.Dense(3)(x.mean(axis=(1, 2, 3)))  # [b, 3]


@jax.jit
def _expected(params, video, labels, rng):
  """The mixup loss (smoothing 0.3) and dominant-label accuracy, outside the step."""
  stream = steps._MIXUP_STREAM  # pylint: disable=protected-access
  clips, lam, perm = steps.mixup(jax.random.fold_in(rng, stream), data.normalize(video), 0.4)
  logits = _Linear().apply({'params': params}, clips)
  loss = optim.cross_entropy(logits, steps.mixup_targets(labels, lam, perm, 3), 0.3)
  dominant = jnp.where(lam >= 0.5, labels, labels[perm])
  return loss, jnp.mean(jnp.argmax(logits, -1) == dominant)


def test_train_step_with_mixup_under_jit_and_pmap():
  tx = optax.sgd(0.1)
  video = np.asarray(jax.random.randint(jax.random.PRNGKey(3), (8, 1, 2, 2, 3), 0, 256),
                     np.uint8)
  labels = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
  _, init = train_state.make_init_fn(_Linear(), tx, (4, 1, 2, 2, 3))
  state = jax.jit(init)(jax.random.PRNGKey(0))
  step = steps.make_train_step(_Linear(), tx, optax.constant_schedule(0.1),
                               label_smoothing=0.3, mixup_alpha=0.4)
  _, metrics = jax.jit(step)(state, {'video': video[:4], 'label': labels[:4]})
  loss, accuracy = _expected(state.params, video[:4], labels[:4], jax.random.fold_in(state.rng, 0))
  assert float(metrics['loss']) == pytest.approx(float(loss), rel=1e-5)
  assert float(metrics['accuracy']) == pytest.approx(float(accuracy))

  # pmap over 2 devices: each mixes its half with its own rng (the device index folded in)
  pstep = steps.make_train_step(_Linear(), tx, optax.constant_schedule(0.1),
                                label_smoothing=0.3, mixup_alpha=0.4, axis_name='b')
  replicated = jax.tree_util.tree_map(lambda x: np.stack([np.asarray(x)] * 2), state)
  _, pmetrics = jax.pmap(pstep, axis_name='b', devices=jax.devices()[:2])(
      replicated, {'video': video.reshape(2, 4, 1, 2, 2, 3), 'label': labels.reshape(2, 4)})
  per_device = [_expected(state.params, video[4 * d:4 * d + 4], labels[4 * d:4 * d + 4],
                          jax.random.fold_in(jax.random.fold_in(state.rng, 0), d))
                for d in range(2)]
  assert float(pmetrics['loss'][0]) == pytest.approx(
      np.mean([float(l) for l, _ in per_device]), rel=1e-5)
  assert float(pmetrics['accuracy'][0]) == pytest.approx(
      np.mean([float(a) for _, a in per_device]))


# ------------------------------------------------------------------------- views


def test_sum_logits_and_mean_softmax_pick_different_classes_on_a_hand_example():
  # one video, 3 views: [5, 0], [0, 2], [0, 2]. Sum of logits [5, 4] -> class 0; mean of
  # softmax: class 0 = (0.99331 + 2 x 0.11920) / 3 = 0.41057 -> class 1.
  logits = jnp.array([[5.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
  np.testing.assert_allclose(steps.reduce_views(logits, 3, 'sum_logits'), [[5.0, 4.0]])
  np.testing.assert_allclose(steps.reduce_views(logits, 3, 'mean_softmax'),
                             [[0.410575, 0.589425]], rtol=1e-5)

  class Probe:
    def apply(self, variables, clips, train):
      del variables, train
      return jnp.mean(clips, axis=(1, 2, 3))[:, :2] * 127.5  # [b * v, 2]: pixels -> logits

  video = np.full((1, 3, 1, 1, 1, 3), 127.5, np.float32)  # normalized to 0
  video[0, 0, ..., 0] = 132.5  # (132.5 - 127.5) / 127.5 * 127.5 = 5
  video[0, 1:, ..., 1] = 129.5  # 2
  batch = {'video': video, 'label': np.array([0]), 'mask': np.array([True])}
  norm = ((127.5,) * 3, (127.5,) * 3)
  for reduction, correct in (('sum_logits', 1.0), ('mean_softmax', 0.0)):
    sums = steps.make_eval_step(Probe(), 2, normalization=norm, view_reduction=reduction)({},
                                                                                          batch)
    assert float(sums['correct1']) == correct, reduction
  with pytest.raises(ValueError, match='view_reduction'):
    steps.make_eval_step(Probe(), 2, view_reduction='max')


# ---------------------------------------------------------------------- sampling


def test_segment_sampling_on_a_known_case():
  # 10 frames, 4 segments of (10 - 1) / 4 = 2.25: [0, 2], [2, 4], [4, 7], [7, 9]
  # (round(4.5) = 4, half to even, as numpy in the official loader).
  np.testing.assert_array_equal(sampling.sample_segment_test_indices(10, 4, 2),
                                [[1, 3, 5, 8], [0, 2, 4, 7]])
  draws = np.stack([sampling.sample_segment_train_indices(10, 4, np.random.default_rng(s))
                    for s in range(300)])  # [300, 4]
  assert draws.min(0).tolist() == [0, 2, 4, 7] and draws.max(0).tolist() == [2, 4, 7, 9]
  np.testing.assert_array_equal(sampling.sample_segment_test_indices(1, 3), [[0, 0, 0]])
  with pytest.raises(ValueError):
    sampling.sample_segment_test_indices(10, 4, 3)


# ------------------------------------------------------------------ augmentations


def test_auto_augment_magnitudes_follow_the_timm_rules():
  rng = np.random.default_rng(0)
  level_args = augment._level_args  # pylint: disable=protected-access
  args = lambda name, m: level_args(name, m, rng, 100.0)
  assert abs(args('Rotate', 8)[0]) == pytest.approx(24.0)
  assert abs(args('ShearY', 4)[0]) == pytest.approx(0.12)
  assert abs(args('TranslateYRel', 9)[0]) == pytest.approx(0.405)
  assert args('Color', 9) == (pytest.approx(1.72),)
  assert args('Posterize', 6) == (2,) and args('Posterize', 2) == (0,)
  assert args('Solarize', 3) == (76,) and args('SolarizeAdd', 7) == (77,)
  assert args('Equalize', 1) == ()
  assert len(augment.AUTO_AUGMENT_POLICIES['v0']) == 25


def test_auto_augment_is_deterministic_and_the_same_on_every_frame():
  frames = np.random.default_rng(0).integers(0, 256, (3, 24, 32, 3), dtype=np.uint8)
  changed = 0
  for seed in range(40):
    out = augment.auto_augment(frames, np.random.default_rng(seed))
    np.testing.assert_array_equal(out, augment.auto_augment(frames, np.random.default_rng(seed)))
    assert out.shape == frames.shape and out.dtype == np.uint8
    for t in range(3):  # each frame gets what it would get alone with the same draw
      np.testing.assert_array_equal(
          out[t], augment.auto_augment(frames[t:t + 1], np.random.default_rng(seed))[0])
    changed += not np.array_equal(out, frames)
  assert 20 < changed < 40  # each op is skipped with its probability


def test_rand_augment_specs_parse_as_timm_writes_them():
  assert augment.parse_rand_augment('rand-m9-mstd0.5') == dict(
      magnitude=9.0, magnitude_std=0.5, num_ops=2, prob=0.5)
  assert augment.parse_rand_augment('rand-m7-n3-p1.0') == dict(
      magnitude=7.0, magnitude_std=0.0, num_ops=3, prob=1.0)
  for bad, message in (('rand', 'needs a magnitude'), ('rand-m9-x3', "unknown part 'x3'"),
                       ('rand-mfoo', "'mfoo' is not m<number>"), ('rnd-m9', "start with 'rand-'"),
                       ('rand-m9-n0', 'n must be >= 1')):
    with pytest.raises(ValueError, match=message):
      augment.parse_rand_augment(bad)
  assert len(augment.RAND_AUGMENT_OPS) == 15


def test_rand_augment_is_deterministic_the_same_on_every_frame_and_draws_its_ops():
  frames = np.random.default_rng(0).integers(0, 256, (3, 24, 32, 3), dtype=np.uint8)
  changed = 0
  for seed in range(40):
    out = augment.augment_policy(frames, np.random.default_rng(seed), 'rand-m9-mstd0.5')
    np.testing.assert_array_equal(
        out, augment.rand_augment(frames, np.random.default_rng(seed), 'rand-m9-mstd0.5'))
    assert out.shape == frames.shape and out.dtype == np.uint8
    for t in range(3):  # each frame gets what it would get alone with the same draw
      np.testing.assert_array_equal(
          out[t], augment.rand_augment(frames[t:t + 1], np.random.default_rng(seed))[0])
    changed += not np.array_equal(out, frames)
  # Two ops each applied with probability 0.5: about 1 clip in 4 is left as it was.
  assert 20 < changed < 38
  # Always-on ops (p = 1) at an out-of-range magnitude (clipped to 10): every clip changes.
  always = sum(not np.array_equal(augment.rand_augment(
      frames, np.random.default_rng(s), 'rand-m30-mstd2-n3-p1.0'), frames) for s in range(20))
  assert always >= 18


def test_random_erasing_zeros_one_box_of_the_right_area_on_every_frame():
  clip = np.full((3, 40, 50, 3), 200, np.uint8)
  erased = 0
  for seed in range(200):
    out = augment.random_erasing(clip, np.random.default_rng(seed), 0.5)
    zero = np.all(out == 0, axis=-1)  # [t, h, w]
    if not zero.any():
      np.testing.assert_array_equal(out, clip)
      continue
    erased += 1
    assert (zero == zero[0]).all()  # the same box on every frame
    rows, cols = np.where(zero[0])
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert box == zero[0].sum()  # a rectangle
    assert 0.02 * 2000 * 0.8 <= box <= 2000 / 3 * 1.1  # area fraction in [0.02, 1/3] +- rounding
    np.testing.assert_array_equal(out[~zero], clip[~zero])
  assert 70 < erased < 130  # p = 0.5


def test_multi_scale_crop_sides_and_offsets_are_tsn():
  sides = [256, 224, 192, 168]  # int(256 x {1, .875, .75, .66}); 224 is within 3 of 224
  seen = set()
  for seed in range(300):
    x0, y0, x1, y1 = augment.multi_scale_crop_box(256, 340, 224, np.random.default_rng(seed))
    w, h = x1 - x0, y1 - y0
    assert abs(sides.index(w) - sides.index(h)) <= 1
    ws, hs = (340 - w) // 4, (256 - h) // 4
    grid = {(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1),
            (3, 1), (1, 3), (3, 3)}  # in steps of (ws, hs)
    assert (x0, y0) in {(i * ws, j * hs) for i, j in grid}
    seen.add((w, h))
  assert len(seen) == 10  # 4 + 2 x 3 pairs at most one step apart
  assert augment.jitter_short_side((256, 320), np.random.default_rng(0)) in range(256, 321)


def _coded_frames(n, h=40, w=56):
  """JPEG frames whose green level encodes the frame index (8 i + 4)."""
  f = np.zeros((n, h, w, 3), np.uint8)
  f[..., 1] = (8 * np.arange(n) + 4)[:, None, None]
  f[..., 0] = 100
  return [encode_jpeg(x, quality=95) for x in f]


def _decode(clip):
  return np.round((clip[..., 1].reshape(clip.shape[0], -1).mean(1) - 4) / 8).astype(int)


def test_train_clip_and_eval_views_with_segment_sampling_and_all_augmentations():
  frames = _coded_frames(20)
  kwargs = dict(clip_len=4, frame_interval=1, crop_size=16, short_side=None,
                random_resized_crop=False, sampling='segment', short_side_range=(24, 32),
                multi_scale_crop=True, random_erasing_prob=0.0)
  for seed in range(5):
    clip = transforms.train_clip(frames, 20, np.random.default_rng(seed), **kwargs)
    assert clip.shape == (4, 16, 16, 3)
    # (20 - 1) / 4 = 4.75: segments [0, 5], [5, 10], [10, 14], [14, 19]
    idx = _decode(clip)
    assert all(lo <= i <= hi for i, (lo, hi) in zip(idx, [(0, 5), (5, 10), (10, 14), (14, 19)]))
  full = dict(kwargs, auto_augment='v0', random_erasing_prob=1.0)
  a = transforms.train_clip(frames, 20, np.random.default_rng(3), **full)
  np.testing.assert_array_equal(a, transforms.train_clip(frames, 20, np.random.default_rng(3),
                                                         **full))
  views = transforms.eval_views(frames, 20, clip_len=4, frame_interval=1, num_clips=2,
                                num_crops=3, crop_size=16, short_side=24, sampling='segment')
  assert views.shape == (6, 4, 16, 16, 3)
  for v in range(6):  # clip-major: views 0-2 the segment middles, 3-5 their starts
    np.testing.assert_array_equal(_decode(views[v]), [[2, 7, 12, 16], [0, 5, 10, 14]][v // 3])


def test_pipeline_runs_with_the_recipe_options(tmp_path):
  name = data.ensure_synthetic_dataset(tmp_path, num_videos_per_class_train=1,
                                       num_videos_per_class_test=1, num_frames=12, size=32,
                                       num_workers=1)
  options = dict(name=name, data_dir=tmp_path, batch_size=2, clip_len=4, frame_interval=1,
                 crop_size=24, short_side=None, random_resized_crop=False, sampling='segment',
                 short_side_range=(28, 36), auto_augment='v0', random_erasing_prob=0.5,
                 seed=0, process_index=0, process_count=1, num_threads=1)
  rand = dict(options, auto_augment='rand-m9-mstd0.5')
  assert next(iter(data.create_train_dataset(**rand)))['video'].shape == (2, 4, 24, 24, 3)
  batches = [next(iter(data.create_train_dataset(**options))) for _ in range(2)]
  assert batches[0]['video'].shape == (2, 4, 24, 24, 3)
  np.testing.assert_array_equal(batches[0]['video'], batches[1]['video'])
  ms = dict(options, short_side_range=None, multi_scale_crop=True, sampling='dense')
  assert next(iter(data.create_train_dataset(**ms)))['video'].shape == (2, 4, 24, 24, 3)


# ------------------------------------------------------------------------ config


@pytest.mark.parametrize('field, value, message', [
    ('data.sampling', 'tsn', "config.data.sampling must be 'dense' or 'segment'"),
    ('eval.view_reduction', 'max', 'config.eval.view_reduction must be'),
    ('train.mixup_alpha', -1.0, 'config.train.mixup_alpha must be >= 0'),
    ('data.auto_augment', 'v1', 'config.data.auto_augment must be'),
    ('data.auto_augment', 'rand-q3', "config.data.auto_augment: RandAugment spec 'rand-q3'"),
    ('data.random_erasing_prob', 2.0, 'config.data.random_erasing_prob must be in'),
    ('data.multi_scale_crop', True, 'choose one train crop'),
])
def test_bad_recipe_options_give_one_line_config_errors(field, value, message):
  c = config_base.base_config()
  data.check_recipe_config(c)  # the defaults are valid
  section, key = field.split('.')
  c[section][key] = value
  with pytest.raises(ConfigError, match=message) as info:
    data.check_recipe_config(c)
  assert '\n' not in str(info.value)
