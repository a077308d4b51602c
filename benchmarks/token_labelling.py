"""Cost of Token Labelling: the on-line and off-line distillation steps against the plain
step.

Builds `configs/default.py` (the plain nano step) and `configs/distill_default.py` (the
same student with the Token Labelling head, plus the frozen teacher's forward pass in
the same jitted step) exactly as `train.py` does, and the off-line step (the same student,
soft targets taken from the batch, as `config.token_labelling.labels` trains), then times
their train steps on the same random batch in alternating rounds, so a machine shared
with other work slows all alike. Prints the median seconds per step and the ratios to the
plain step. (The off-line row leaves out the host's work of mapping the stored labels
onto each clip, `offline.AddTargets`, which runs in the input pipeline.) Needs the default run's
checkpoint (the teacher) and its dataset:

    python train.py --config configs/default.py --workdir workdir/default
    python benchmarks/token_labelling.py --rounds 5 --steps 5
    python benchmarks/token_labelling.py --teacher PATH      # another teacher

`--agreement` measures instead how well off-line targets agree with on-line ones
(`agreement`): N training clips drawn by the real training pipeline (its frame sampling
and random resized crop, `create_train_dataset(with_meta=True)`), their on-line targets
(the teacher on the very clip, `soft_targets`) against their off-line ones
(`TokenLabels.targets` from an annotation of the training split, made into a temporary
directory unless `--labels` names one); the canonical clips of the same videos give a
sanity line (about 100% and 0):

    python benchmarks/token_labelling.py --agreement --clips 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import default as default_config  # noqa: E402
from configs import distill_default  # noqa: E402
import optax  # noqa: E402

from dualformer_jax import data  # noqa: E402
from dualformer_jax import models  # noqa: E402
from dualformer_jax import train_lib  # noqa: E402
from dualformer_jax.token_labelling import annotate as annotate_lib  # noqa: E402
from dualformer_jax.token_labelling import losses as tl_losses  # noqa: E402
from dualformer_jax.token_labelling import offline as offline_lib  # noqa: E402
from dualformer_jax.token_labelling import targets as targets_lib  # noqa: E402
from dualformer_jax.token_labelling import teacher as teacher_lib  # noqa: E402
from dualformer_jax.token_labelling import train_step as tl_step  # noqa: E402


def build(config, offline: bool = False):
  """`(step, state, batch)` of `config`, as train.py builds them; `offline`: the Token
  Labelling step that takes the soft targets from the batch (no teacher)."""
  s = train_lib.setup(config)
  if offline:
    step = tl_step.make_train_step(s.model, None, s.runtime.tx, optax.constant_schedule(0.0),
                                   normalization=train_lib.normalization(
                                       config, models.family_of(s.model)))
    s.runtime.use_teacher(step, {}, {})
  state = s.runtime.init_state(jax.random.PRNGKey(config.seed))
  d = config.data
  rng = np.random.default_rng(0)
  batch = {'video': rng.integers(0, 256, (config.train.batch_size, d.clip_len, d.crop_size,
                                          d.crop_size, 3), dtype=np.uint8),
           'label': rng.integers(0, s.num_classes, (config.train.batch_size,), dtype=np.int32)}
  if offline:
    grid = teacher_lib.token_grid(s.model)
    logits = rng.standard_normal((config.train.batch_size, *grid, s.num_classes))
    batch['targets'] = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(
        np.float32)  # [b, d, h, w, K]
  return s.runtime, state, batch


def time_steps(runtime, state, batch, steps: int):
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = runtime.train_step(state, batch)
  jax.block_until_ready(metrics)
  return state, (time.perf_counter() - start) / steps


def _compare(online: np.ndarray, offline: np.ndarray, logits: dict[str, np.ndarray]
             ) -> dict[str, np.ndarray]:
  """Per-clip numbers `[b]` of two target sets `[b, d, h, w, K]`: top-1 token agreement,
  total variation, and for each of `logits` the token soft CE under each set."""
  out = {'top1': (online.argmax(-1) == offline.argmax(-1)).mean(axis=(1, 2, 3)),
         'tv': 0.5 * np.abs(online - offline).sum(-1).mean(axis=(1, 2, 3))}
  for name, z in logits.items():
    for which, t in (('online', online), ('offline', offline)):
      out[f'ce_{name}_{which}'] = np.array([float(tl_losses.soft_cross_entropy(z[i], t[i]))
                                            for i in range(len(z))])
  return out


def _summary(parts: list[dict[str, np.ndarray]], logit_names) -> dict[str, float]:
  """Means over clips: top-1 agreement (%), total variation, per `logit_names` the mean
  CE under both targets and the mean absolute per-clip CE difference."""
  cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  out = {'clips': int(len(cat['top1'])), 'top1_agreement_pct': 100.0 * float(cat['top1'].mean()),
         'total_variation': float(cat['tv'].mean())}
  for name in logit_names:
    on, off = cat[f'ce_{name}_online'], cat[f'ce_{name}_offline']
    out[f'ce_{name}_online'], out[f'ce_{name}_offline'] = float(on.mean()), float(off.mean())
    out[f'ce_{name}_abs_diff'] = float(np.abs(on - off).mean())
  return out


def agreement(teacher_path: str, clips: int = 64, labels_dir: str = '', batch_size: int = 8,
              seed: int = 0) -> dict:
  """Off-line against on-line soft targets on the same clips (module docstring).

  The soft CE is the token loss with two sets of logits: the student's token branch at
  init (`configs/distill_default.py`'s student, seed `seed`) and the teacher's own
  per-token logits on the clip.
  """
  config = distill_default.get_config(teacher_path)
  d, tl = config.data, config.token_labelling
  name = train_lib.resolve_dataset(config)
  info = data.dataset_info(name, d.data_dir)
  teacher = teacher_lib.load_teacher(teacher_path, num_classes=info.num_classes,
                                     video_size=(d.clip_len, d.crop_size, d.crop_size))
  norm = train_lib.normalization(config, models.family_of(teacher.model))
  student = train_lib.build_model(config, info.num_classes)
  grid = teacher_lib.token_grid(student)
  teacher_lib.check_grids(student, teacher.model)
  example = np.zeros((1, d.clip_len, d.crop_size, d.crop_size, 3), np.float32)
  student_vars = student.init(jax.random.PRNGKey(seed), example, train=False)
  fill = -np.inf if tl.top_k_only else 0.0
  opts = dict(top_k=tl.top_k, fill=fill, temporal=tl.temporal_average)

  @jax.jit
  def forward(video):
    x = data.normalize(video, *norm)
    t_logits = teacher_lib.token_logits(teacher.model, teacher.variables, x)
    _, s_logits = student.apply(student_vars, x, train=False,
                                method='token_labelling_logits')
    online = targets_lib.soft_targets(t_logits, grid, tl.top_k, temporal=tl.temporal_average,
                                      fill=fill)
    t_logits = targets_lib.temporal_average(t_logits, grid[0], tl.temporal_average)
    return online, t_logits, s_logits

  tmp = None
  if not labels_dir:
    tmp = tempfile.TemporaryDirectory(prefix='token_labels_')
    labels_dir = tmp.name
    start = time.perf_counter()
    annotate_lib.annotate_split(
        name=name, data_dir=d.data_dir, split=d.train_split, teacher=teacher, output=labels_dir,
        top_k=tl.top_k, clip_len=d.clip_len, frame_interval=d.frame_interval,
        crop_size=d.crop_size, normalization=norm, batch_size=batch_size, progress=False)
    annotate_seconds = time.perf_counter() - start
  else:
    annotate_seconds = None
  labels = offline_lib.TokenLabels(labels_dir, d.train_split)
  ds = data.create_train_dataset(
      name=name, data_dir=d.data_dir, split=d.train_split, batch_size=batch_size,
      clip_len=d.clip_len, frame_interval=d.frame_interval, crop_size=d.crop_size,
      short_side=d.short_side, random_resized_crop=d.random_resized_crop,
      area_range=tuple(d.area_range), aspect_range=tuple(d.aspect_range), flip=d.flip,
      sampling=d.sampling, seed=config.seed, num_workers=0, with_meta=True)
  names = ('student_init', 'teacher')
  augmented, canonical, seen = [], [], []
  map_seconds = 0.0
  for batch in iter(ds):
    online, t_logits, s_logits = jax.device_get(forward(batch['video']))
    start = time.perf_counter()
    off = labels.batch_targets(batch, grid, **opts)
    map_seconds += time.perf_counter() - start
    augmented.append(_compare(online, off, {'student_init': s_logits, 'teacher': t_logits}))
    seen.extend(int(i) for i in batch['index'])
    if len(seen) >= clips:
      break
  # Sanity: the first canonical clip of each video seen, through the same two paths.
  source = pipeline_source(name, d.data_dir, d.train_split)
  for i in range(0, len(seen), batch_size):
    rows = seen[i:i + batch_size]
    video, off = [], []
    for e in rows:
      ex = pipeline_parse(source[e])
      idx, box, rendered = annotate_lib.canonical_clips(
          ex['video'], int(ex['num_frames']), clip_len=d.clip_len,
          frame_interval=d.frame_interval, crop_size=d.crop_size)
      video.append(rendered[0])
      off.append(labels.targets(e, idx[0], box, grid, **opts))
    video = np.stack(video + [video[0]] * (batch_size - len(rows)))  # one compilation
    online, t_logits, s_logits = (a[:len(rows)] for a in jax.device_get(forward(video)))
    canonical.append(_compare(online, np.stack(off),
                              {'student_init': s_logits, 'teacher': t_logits}))
  if tmp is not None:
    tmp.cleanup()
  return {'augmented': _summary(augmented, names), 'canonical': _summary(canonical, names),
          'teacher': teacher.source, 'grid': list(grid), 'top_k': tl.top_k,
          'annotate_seconds': annotate_seconds,
          'offline_map_ms_per_clip': 1e3 * map_seconds / len(seen),
          'area_range': list(d.area_range), 'flip': bool(d.flip)}


def pipeline_source(name, data_dir, split):
  """The split's records (the pipeline's own reader)."""
  from dualformer_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  return pipeline._source(name, data_dir, split)  # pylint: disable=protected-access


def pipeline_parse(raw):
  """One record, parsed (the pipeline's own parser)."""
  from dualformer_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  return pipeline._parse(raw)  # pylint: disable=protected-access


def print_agreement(result: dict) -> None:
  print(f'teacher {result["teacher"]}, token grid {tuple(result["grid"])}, top-{result["top_k"]}'
        f'; annotation {result["annotate_seconds"] and round(result["annotate_seconds"], 1)} s'
        f', off-line mapping {result["offline_map_ms_per_clip"]:.2f} ms/clip')
  for view, r in (('augmented', result['augmented']), ('canonical', result['canonical'])):
    print(f'{view:10s} {r["clips"]:4d} clips: top-1 agreement {r["top1_agreement_pct"]:.2f}%, '
          f'mean TV {r["total_variation"]:.4f}')
    for name in ('student_init', 'teacher'):
      print(f'{"":10s} token CE ({name} logits): on-line {r[f"ce_{name}_online"]:.4f}, '
            f'off-line {r[f"ce_{name}_offline"]:.4f}, mean |diff| '
            f'{r[f"ce_{name}_abs_diff"]:.4f}')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--teacher', default=distill_default.TEACHER)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--steps', type=int, default=5, help='timed steps per round')
  parser.add_argument('--json', action='store_true')
  parser.add_argument('--agreement', action='store_true',
                      help='off-line against on-line targets instead of the step times')
  parser.add_argument('--clips', type=int, default=64, help='--agreement: training clips')
  parser.add_argument('--labels', default='', help='--agreement: an existing annotation of '
                      'the training split (default: annotate into a temporary directory)')
  args = parser.parse_args(argv)
  if args.agreement:
    result = agreement(args.teacher, args.clips, args.labels)
    if args.json:
      print(json.dumps(result))
    else:
      print_agreement(result)
    return
  runs = {'plain': build(default_config.get_config()),
          'token_labelling': build(distill_default.get_config(args.teacher)),
          'offline': build(distill_default.get_config(args.teacher), offline=True)}
  states, times = {}, {name: [] for name in runs}
  for name, (runtime, state, batch) in runs.items():  # compile and warm up
    states[name], _ = time_steps(runtime, state, batch, 1)
  for _ in range(args.rounds):
    for name, (runtime, _, batch) in runs.items():
      states[name], seconds = time_steps(runtime, states[name], batch, args.steps)
      times[name].append(seconds)
  median = {name: statistics.median(t) for name, t in times.items()}
  result = {'seconds_per_step': median,
            'ratio': median['token_labelling'] / median['plain'],
            'ratio_offline': median['offline'] / median['plain'],
            'ratio_online_offline': median['token_labelling'] / median['offline'],
            'rounds': args.rounds, 'steps': args.steps, 'devices': jax.device_count()}
  if args.json:
    print(json.dumps(result))
  else:
    for name, seconds in median.items():
      print(f'{name:16s} {seconds:.3f} s/step')
    print(f'ratio (token_labelling / plain): {result["ratio"]:.2f}')
    print(f'ratio (offline / plain): {result["ratio_offline"]:.2f}')
    print(f'ratio (token_labelling / offline): {result["ratio_online_offline"]:.2f}')


if __name__ == '__main__':
  main()
