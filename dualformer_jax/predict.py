"""Classify a video file with a DualFormer checkpoint (the official multi-view protocol).

    python -m dualformer_jax.predict --checkpoint CKPT --video FILE [--labels FILE]

`CKPT` is one of our orbax checkpoints (written by `model_checkpoint.save_model`, by
`python -m dualformer_jax.convert to-flax`, or a training run: `WORKDIR`,
`WORKDIR/checkpoints` or `WORKDIR/checkpoints/<step>`; a run gives its latest step), or
an official PyTorch `.pth` / `.safetensors` state dict, converted on the fly (the variant
and number of classes are read from its tensors; `--variant` and `--num_classes` force
them).

The video is any file PyAV (FFmpeg) decodes. As in the official test protocol
(mmaction2 `SampleFrames(test_mode=True)`, `Resize(-1, short_side)`, `CenterCrop` or
`ThreeCrop`, `average_clips='prob'`), `num_clips` uniformly spaced clips of `clip_len`
frames `frame_interval` apart are taken, the shorter side resized to `short_side`, and 1
centre crop or 3 crops (along the longer side) of `crop_size` cut from each clip; the
softmax probabilities of the `num_clips * num_crops` views are averaged.

Defaults: 4 clips x 1 crop, `clip_len` = the model's `video_size[0]`, `frame_interval` 2,
`short_side` = `crop_size` = the model's `video_size[1]`. `--config configs/x.py[:arg]`
takes `clip_len`, `frame_interval`, `eval_short_side`, `eval_crop_size` (and the model
variant and classes for a `.pth`) from a training config instead; flags still win.

From Python (as the notebooks do):

    from dualformer_jax import predict
    model, variables = predict.load_checkpoint('workdir/checkpoints')
    probs = predict.classify_video(model, variables, 'video.mp4', num_clips=4)
    for rank, (index, name, p) in enumerate(predict.top_k(probs, 5, class_names), 1): ...
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from dualformer_jax import host_memory
from dualformer_jax.cli import errors

# Heavy modules (jax, flax, orbax, torch) are imported inside functions, so that
# `--help` and argument errors are instant.

OFFICIAL_SUFFIXES = ('.pth', '.pt', '.safetensors', '.npz')


class PredictError(Exception):
  """An input problem reported to the user as one line (no traceback)."""


# ---------------------------------------------------------------------------------------
# Checkpoints


def find_checkpoint(path: str | os.PathLike) -> str:
  """The checkpoint `path` names: a file, a model checkpoint dir, or a run's latest step.

  A directory that is not itself a checkpoint is searched for integer step directories
  (`path/<step>` or `path/checkpoints/<step>`) holding the model items; the largest step
  wins. Orbax's temporary directories and unfinished steps are ignored.
  """
  from dualformer_jax import model_checkpoint  # pylint: disable=import-outside-toplevel

  path = os.fspath(path)
  if not os.path.exists(path):
    raise PredictError(f'checkpoint not found: {path}')
  if os.path.isfile(path) or model_checkpoint.is_model_checkpoint(path):
    return path
  steps = []
  for parent in (path, os.path.join(path, 'checkpoints')):
    if not os.path.isdir(parent):
      continue
    for name in os.listdir(parent):
      step_dir = os.path.join(parent, name)
      if name.isdigit() and model_checkpoint.is_model_checkpoint(step_dir):
        steps.append((int(name), step_dir))
  if not steps:
    raise PredictError(
        f'no checkpoint in {path}: expected a checkpoint directory (with '
        f'{", ".join(model_checkpoint.MODEL_ITEMS)}), a training workdir with '
        f'checkpoints/<step>/, or an official {"/".join(OFFICIAL_SUFFIXES[:3])} file.')
  return max(steps)[1]


def infer_variant(state_dict: Mapping[str, Any]) -> str:
  """The variant (of any family) whose shapes an official state dict has."""
  from dualformer_jax import models  # pylint: disable=import-outside-toplevel

  reasons = []
  for family in models.families().values():
    if family.infer_variant is None:
      continue
    try:
      return family.infer_variant(state_dict)
    except ValueError as e:
      reasons.append(f'{family.name}: {e}')
  raise PredictError('no known variant fits this state dict (' + '; '.join(reasons) +
                     f'): pass --variant (one of {", ".join(sorted(models.all_variants()))}).')


def load_checkpoint(path: str | os.PathLike, *, variant: str | None = None,
                    num_classes: int | None = None,
                    video_size: Sequence[int] | None = None) -> tuple[Any, dict[str, Any]]:
  """Our checkpoint or an official state dict -> `(model, variables)`.

  Args:
    path: see `find_checkpoint`; `.pth`, `.pt`, `.safetensors` and `.npz` files are
      official state dicts.
    variant: for an official file, the variant (default: read from the tensor shapes).
    num_classes: for an official file, the classes (default: the classifier's rows); a
      different value is an error.
    video_size: for an official file, the `(T, H, W)` the model was built for (default:
      the variant's).
  """
  from dualformer_jax import convert, models  # pylint: disable=import-outside-toplevel

  path = find_checkpoint(path)
  if os.path.isdir(path):
    return load_model_here(path)
  if not path.endswith(OFFICIAL_SUFFIXES):
    raise PredictError(f'{path} is a file but not an official checkpoint '
                       f'({", ".join(OFFICIAL_SUFFIXES)}).')
  try:
    state_dict = convert.load_state_dict(path)
  except (ImportError, errors.UserError):  # torch missing; a damaged file (named)
    raise
  except Exception as e:  # torch/safetensors raise many kinds on a damaged file.
    raise PredictError(f'cannot read checkpoint {path}: {type(e).__name__}: {e}') from e
  if variant is not None:
    try:
      models.family_of_variant(variant)
    except models.UnknownVariantError as e:
      raise PredictError(str(e)) from None
  variant = variant or infer_variant(state_dict)
  family = models.family_of_variant(variant)
  classes = models.registry.head_classes(family, state_dict)
  if classes is None:
    raise PredictError(f'{path} has no classifier ({family.head_prefix}*): it is a '
                       'backbone-only checkpoint; fine-tune it first (train.py).')
  if num_classes is not None and num_classes != classes:
    raise PredictError(f'--num_classes {num_classes} does not match the checkpoint, whose '
                       f'classifier has {classes} classes.')
  overrides = {'video_size': tuple(int(v) for v in video_size)} if video_size else {}
  model = models.create_model(variant, num_classes=classes, **overrides)
  try:
    variables = convert.from_pytorch(state_dict, model)
  except convert.ConversionError as e:
    raise PredictError(f'{path} does not fit {family.name}/{variant}: {e}') from e
  return model, variables


def load_model_here(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
  """One of our checkpoint directories -> `(model, variables)` on this process's first device.

  Unlike a restore without a target, this also reads checkpoints written on another
  device topology (e.g. a training step saved sharded over a TPU mesh, read on a laptop).
  """
  from dualformer_jax import model_checkpoint  # pylint: disable=import-outside-toplevel

  return model_checkpoint.load_model(path)


def read_labels(path: str | os.PathLike) -> list[str]:
  """Class names, one per line (blank lines at the ends are ignored)."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = [line.strip() for line in f.read().strip().splitlines()]
  except OSError as e:
    raise PredictError(f'cannot read the labels file: {e}') from e
  if not lines or any(not line for line in lines):
    raise PredictError(f'{path}: expected one class name per line, without blank lines.')
  return lines


# ---------------------------------------------------------------------------------------
# Views and classification


@dataclasses.dataclass(frozen=True)
class ViewSettings:
  """How the test views of a video are cut (see the module docstring)."""
  num_clips: int = 4  # Uniformly spaced clips.
  num_crops: int = 1  # 1: centre crop, 3: start/centre/end of the longer side.
  clip_len: int = 32  # Frames per clip.
  frame_interval: int = 2  # Stride between sampled frames.
  short_side: int = 224  # The shorter side is resized to this before cropping.
  crop_size: int = 224  # Square crop fed to the model.

  @property
  def num_views(self) -> int:
    return self.num_clips * self.num_crops

  def describe(self) -> str:
    crops = 'crop' if self.num_crops == 1 else 'crops'
    return (f'{self.num_clips} clips x {self.num_crops} {crops} of {self.clip_len} frames '
            f'(interval {self.frame_interval}), short side {self.short_side}, '
            f'{self.crop_size}x{self.crop_size}')


def default_view_settings(model, **overrides: Any) -> ViewSettings:
  """The model's clip shape with the official 4x1 test views; `None` overrides are ignored."""
  from dualformer_jax import models  # pylint: disable=import-outside-toplevel

  t, h, _ = models.input_shape(model)
  values = dict(num_clips=4, num_crops=1, clip_len=t, frame_interval=2, short_side=h,
                crop_size=h)
  values.update({k: v for k, v in overrides.items() if v is not None})
  settings = ViewSettings(**{k: int(v) for k, v in values.items()})
  if settings.num_crops not in (1, 3):
    raise PredictError(f'num_crops must be 1 or 3, got {settings.num_crops}.')
  if min(settings.num_clips, settings.clip_len, settings.frame_interval) < 1:
    raise PredictError('num_clips, clip_len and frame_interval must be positive.')
  if settings.crop_size > settings.short_side:
    raise PredictError(f'crop_size {settings.crop_size} is larger than short_side '
                       f'{settings.short_side}.')
  return settings


def read_frames(video: str | os.PathLike, short_side: int | None = None
                ) -> tuple[list[np.ndarray], float]:
  """Decodes every frame (shorter side resized to `short_side`) -> `(frames, fps)`."""
  from dualformer_jax.data import video_io  # pylint: disable=import-outside-toplevel

  path = os.fspath(video)
  if not os.path.exists(path):
    raise PredictError(f'video not found: {path}')
  if os.path.isdir(path):
    raise PredictError(f'{path} is a directory, not a video file.')
  try:
    frames, fps, _ = video_io.read_video(path, short_side=short_side)
  except video_io.VideoDecodeError as e:
    raise PredictError(f'cannot decode video {path}: {e}') from e
  return frames, fps


def video_views(frames: Sequence[np.ndarray] | np.ndarray, settings: ViewSettings
                ) -> np.ndarray:
  """The test views of a video: `uint8 [num_clips * num_crops, clip_len, crop, crop, 3]`.

  `frames` are RGB `uint8 [h, w, 3]` (any size: the shorter side is resized to
  `settings.short_side`). Views are ordered clip-major (clip 0 crop 0, clip 0 crop 1, ...),
  as in the eval pipeline.
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel

  from dualformer_jax.data import sampling, transforms  # pylint: disable=import-outside-toplevel

  if len(frames) == 0:
    raise PredictError('the video has no frames.')
  s = settings
  idx = sampling.sample_test_indices(len(frames), s.clip_len, s.frame_interval, s.num_clips)
  h, w = np.asarray(frames[0]).shape[:2]
  scale = s.short_side / min(h, w)
  sh, sw = (s.short_side, int(round(w * scale))) if h <= w else (int(round(h * scale)),
                                                                  s.short_side)
  if s.num_crops == 1:
    boxes = [transforms.center_crop_box(sh, sw, s.crop_size)]
  else:
    boxes = transforms.three_crop_boxes(sh, sw, s.crop_size)
  out = np.empty((s.num_views, s.clip_len, s.crop_size, s.crop_size, 3), np.uint8)
  images = {int(i): Image.fromarray(np.asarray(frames[int(i)], np.uint8))
            for i in np.unique(idx)}
  for k, box in enumerate(boxes):
    # Resize-then-crop in one step: the box in source pixels, resized to the crop.
    source_box = tuple(c / scale for c in box)
    rendered = {i: np.asarray(img.resize((s.crop_size, s.crop_size), Image.BILINEAR,
                                         box=source_box))
                for i, img in images.items()}
    for c in range(s.num_clips):
      for t, i in enumerate(idx[c]):
        out[c * s.num_crops + k, t] = rendered[int(i)]
  return out


def _probabilities_fn():
  import functools  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel

  from dualformer_jax.data import transforms  # pylint: disable=import-outside-toplevel

  @functools.partial(jax.jit, static_argnums=(0, 1))
  def probabilities(model, normalization, variables, views):  # views: uint8 [b, t, h, w, 3]
    logits = model.apply(variables, transforms.normalize(views, *normalization), train=False)
    return jax.nn.softmax(logits, axis=-1)  # [b, classes]

  return probabilities


_PROBABILITIES = None


def model_normalization(model, mean: Sequence[float] | None = None,
                        std: Sequence[float] | None = None):
  """`(mean, std)` for `model`'s inputs (0-255 scale): the given ones, else its family's."""
  from dualformer_jax import models  # pylint: disable=import-outside-toplevel

  family = models.family_of(model)
  return (tuple(float(v) for v in (mean or family.mean)),
          tuple(float(v) for v in (std or family.std)))


def view_probabilities(model, variables: Mapping[str, Any], views: np.ndarray,
                       batch_size: int = 4, normalization=None) -> np.ndarray:
  """Softmax probabilities of each view: `float32 [num_views, num_classes]`.

  Views go through the model `batch_size` at a time (the last batch padded, so one
  compilation serves every batch). `normalization`: `(mean, std)` on a 0-255 scale
  (default: the model family's).
  """
  global _PROBABILITIES
  if _PROBABILITIES is None:
    _PROBABILITIES = _probabilities_fn()
  normalization = normalization or model_normalization(model)
  num = len(views)
  batch_size = max(1, min(batch_size, num))
  out = []
  for start in range(0, num, batch_size):
    batch = views[start:start + batch_size]
    pad = batch_size - len(batch)
    if pad:
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
    out.append(np.asarray(_PROBABILITIES(model, normalization, variables,
                                         batch))[:batch_size - pad])
  return np.concatenate(out)


def classify_video(model, variables: Mapping[str, Any],
                   video: str | os.PathLike | Sequence[np.ndarray] | np.ndarray, *,
                   num_clips: int | None = None, num_crops: int | None = None,
                   clip_len: int | None = None, frame_interval: int | None = None,
                   short_side: int | None = None, crop_size: int | None = None,
                   batch_size: int = 4) -> np.ndarray:
  """Class probabilities of a video, averaged over its test views: `float32 [classes]`.

  Args:
    model, variables: a DualFormer and its variables (`load_checkpoint`).
    video: a video file, or its frames (`uint8 [t, h, w, 3]` or a list of `[h, w, 3]`).
    num_clips, num_crops, clip_len, frame_interval, short_side, crop_size: the views
      (`None`: `default_view_settings(model)`).
    batch_size: views per forward pass.
  """
  settings = default_view_settings(
      model, num_clips=num_clips, num_crops=num_crops, clip_len=clip_len,
      frame_interval=frame_interval, short_side=short_side, crop_size=crop_size)
  if isinstance(video, (str, os.PathLike)):
    frames, _ = read_frames(video, settings.short_side)
  else:
    frames = video
  views = video_views(frames, settings)
  return view_probabilities(model, variables, views, batch_size).mean(axis=0)


def top_k(probabilities: np.ndarray, k: int = 5,
          class_names: Sequence[str] | None = None) -> list[tuple[int, str, float]]:
  """The `k` most probable classes as `(index, name, probability)`, most probable first."""
  probabilities = np.asarray(probabilities)
  order = np.argsort(-probabilities, kind='stable')[:k]
  names = class_names or [f'class_{i}' for i in range(len(probabilities))]
  return [(int(i), names[i], float(probabilities[i])) for i in order]


def format_table(rows: Sequence[tuple[int, str, float]]) -> str:
  """`top_k` rows as an aligned text table: rank, class, probability."""
  width = max([len('class')] + [len(name) for _, name, _ in rows])
  lines = [f'{"rank":>4}  {"class":<{width}}  probability']
  for rank, (_, name, p) in enumerate(rows, 1):
    lines.append(f'{rank:>4}  {name:<{width}}  {p:11.4f}')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------
# Command line


def config_defaults(spec: str) -> dict[str, Any]:
  """View and model defaults from a training config `path.py[:arg]` (missing fields: none).

  Returns the keys `clip_len`, `frame_interval`, `short_side`, `crop_size`, `variant`,
  `num_classes`, `video_size`, `mean`, `std` and `class_names` for those the config gives.
  """
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise PredictError(f'config file not found: {path}')
  try:
    module_spec = importlib.util.spec_from_file_location('_predict_config', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise PredictError(f'cannot load config {spec}: {type(e).__name__}: {e}') from e

  def field(*names):
    node = config
    for name in names:
      try:
        node = node[name] if isinstance(node, Mapping) else getattr(node, name)
      except (KeyError, AttributeError):
        return None
    return node

  found = {
      'clip_len': field('data', 'clip_len'),
      'frame_interval': field('data', 'frame_interval'),
      'short_side': field('data', 'eval_short_side'),
      'crop_size': field('data', 'eval_crop_size'),
      'variant': field('model', 'variant'),
      'num_classes': field('model', 'num_classes'),
      'video_size': field('model', 'video_size'),
      'mean': field('data', 'mean'),
      'std': field('data', 'std'),
  }
  if found['num_classes'] is not None and found['num_classes'] <= 0:
    found['num_classes'] = None  # "from the dataset"
  for key in ('video_size', 'mean', 'std'):
    if not found[key]:
      found[key] = None
  # Class names of the config's dataset, if it is built where the config says.
  name, data_dir = field('data', 'name'), field('data', 'data_dir')
  if name and data_dir and os.path.isdir(os.path.join(data_dir, *name.split('/'))):
    try:
      from dualformer_jax import data  # pylint: disable=import-outside-toplevel
      found['class_names'] = list(data.dataset_info(name, data_dir).class_names)
    except Exception:  # pylint: disable=broad-except
      pass  # Only a default; --labels gives them otherwise.
  return {k: v for k, v in found.items() if v is not None}


def _parser() -> argparse.ArgumentParser:
  p = errors.ArgumentParser(
      prog='python -m dualformer_jax.predict',
      description='Print the top classes of a video, averaged over the official test '
                  'views (clips x crops).')
  p.add_argument('--checkpoint', required=True,
                 help='our checkpoint dir, a training workdir (latest step), or an official '
                      '.pth/.safetensors')
  p.add_argument('--video', required=True, help='any video file FFmpeg (PyAV) decodes')
  p.add_argument('--labels', default=None,
                 help='text file with one class name per line, in label order')
  p.add_argument('--config', default=None,
                 help='training config file[:arg] giving clip_len, frame_interval, eval '
                      'short side and crop size (and variant/classes for a .pth)')
  p.add_argument('--variant', default=None,
                 help='official file only: tiny, small, base, ... (default: from its shapes)')
  p.add_argument('--num_classes', type=int, default=None,
                 help='official file only (default: the classifier\'s rows)')
  p.add_argument('--video_size', default=None,
                 help='official file only: T,H,W the model was built for (default: the '
                      'variant\'s)')
  p.add_argument('--num_clips', type=int, default=None, help='clips per video (default 4)')
  p.add_argument('--num_crops', type=int, default=None, choices=(1, 3),
                 help='1 centre crop or 3 crops (default 1)')
  p.add_argument('--clip_len', type=int, default=None,
                 help='frames per clip (default: the model\'s video_size[0])')
  p.add_argument('--frame_interval', type=int, default=None, help='default 2')
  p.add_argument('--short_side', type=int, default=None,
                 help='resize the shorter side to this (default: the model\'s video_size[1])')
  p.add_argument('--crop_size', type=int, default=None,
                 help='crop side (default: the model\'s video_size[1])')
  p.add_argument('--top_k', type=int, default=5, help='classes to print (default 5)')
  p.add_argument('--batch_size', type=int, default=4, help='views per forward pass')
  p.add_argument('--grad_cam', default=None, metavar='FILE.npy',
                 help='also write the Grad-CAM map of the top class on the first view: '
                      'float32 [t, h, w] in [0, 1] (any model family)')
  p.add_argument('--json', action='store_true', help='print a JSON object instead of a table')
  p.add_argument('--verbose', action='store_true', help='show the traceback of errors')
  return p


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Does the work of the command line; returns what it prints (see `--json`)."""
  defaults = config_defaults(args.config) if args.config else {}
  pick = lambda name: getattr(args, name) if getattr(args, name) is not None else (
      defaults.get(name))

  # Cheap checks first, so that a bad input fails before the model is loaded.
  checkpoint = find_checkpoint(args.checkpoint)
  class_names = read_labels(args.labels) if args.labels else defaults.get('class_names')
  if not os.path.exists(args.video):
    raise PredictError(f'video not found: {args.video}')

  video_size = pick('video_size')
  if isinstance(video_size, str):
    try:
      video_size = tuple(int(v) for v in video_size.split(','))
    except ValueError:
      raise PredictError(f'--video_size must be T,H,W, got {video_size!r}') from None
  model, variables = load_checkpoint(checkpoint, variant=pick('variant'),
                                     num_classes=pick('num_classes'), video_size=video_size)
  if class_names is not None and len(class_names) != model.num_classes:
    source = args.labels or f'the dataset of {args.config}'
    raise PredictError(f'{source} names {len(class_names)} classes but the model has '
                       f'{model.num_classes}.')

  settings = default_view_settings(
      model, **{k: pick(k) for k in ('num_clips', 'num_crops', 'clip_len', 'frame_interval',
                                     'short_side', 'crop_size')})
  frames, fps = read_frames(args.video, settings.short_side)
  views = video_views(frames, settings)
  normalization = model_normalization(model, defaults.get('mean'), defaults.get('std'))
  try:
    probabilities = view_probabilities(model, variables, views, args.batch_size,
                                       normalization).mean(0)
  except ValueError as e:  # e.g. a clip shape the model's windows do not fit
    raise PredictError(str(e)) from e
  rows = top_k(probabilities, args.top_k, class_names)
  extra = {}
  if args.grad_cam:
    extra['grad_cam'] = write_grad_cam(model, variables, views[0], normalization,
                                       rows[0][0], args.grad_cam)
  return {
      'video': args.video,
      'checkpoint': checkpoint,
      'num_frames': len(frames),
      'fps': fps,
      'views': dataclasses.asdict(settings),
      'top_k': [{'rank': r, 'index': i, 'class': name, 'probability': p}
                for r, (i, name, p) in enumerate(rows, 1)],
      **extra,
  }


def write_grad_cam(model, variables: Mapping[str, Any], view: np.ndarray, normalization,
                   class_index: int, path: str | os.PathLike) -> dict[str, Any]:
  """Grad-CAM (`attention_maps.grad_cam`, any family) of `class_index` on one uint8
  view `[t, h, w, 3]`, normalized as for the prediction; saved as float32 `[t, h, w]`."""
  from dualformer_jax import attention_maps  # pylint: disable=import-outside-toplevel
  from dualformer_jax.data import transforms  # pylint: disable=import-outside-toplevel

  clip = np.asarray(transforms.normalize(view, *normalization))  # float: taken as normalized
  heat = attention_maps.grad_cam(model, variables, clip, class_index=int(class_index))
  np.save(path, heat)
  return {'path': str(path), 'class_index': int(class_index), 'shape': list(heat.shape)}


def _main(argv: Sequence[str]) -> int:
  args = _parser().parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format='%(levelname)s: %(message)s')
  for noisy in ('absl', 'orbax', 'jax'):
    logging.getLogger(noisy).setLevel(logging.ERROR)
  try:
    result = run(args)
  except ImportError as e:  # e.g. torch, for a .pth
    raise PredictError(f'{e} (pip install "dualformer-jax[torch]" reads .pth files)') from e
  if args.json:
    print(json.dumps(result, indent=2))
  else:
    print(f'{result["video"]}: {result["num_frames"]} frames; '
          f'{ViewSettings(**result["views"]).describe()}')
    print(format_table([(r['index'], r['class'], r['probability'])
                        for r in result['top_k']]))
    if 'grad_cam' in result:
      cam = result['grad_cam']
      print(f'Grad-CAM of class {cam["class_index"]} on the first view: {cam["path"]} '
            f'(float32 {"x".join(map(str, cam["shape"]))}, in [0, 1])')
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """`dualformer-predict`: user errors as one `error: ...` line (`--verbose`: traceback)."""
  if argv is None:  # the command line: huge pages for XLA:CPU's temporaries (host_memory)
    host_memory.reexec_with_huge_pages()
  return errors.run_main(_main, argv)


if __name__ == '__main__':
  sys.exit(main())
