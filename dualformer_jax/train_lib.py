"""Training and evaluation: `train_and_evaluate(config, workdir)`.

The loop: build (or find) the dataset, build the model and optimizer from the config,
create the state sharded over the mesh (or replicated for pmap), resume from the latest
checkpoint or start from `config.init_from`, then train with periodic logging,
checkpoints and evaluation. SIGTERM/SIGINT save the current step and return cleanly.
"""

import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Any

import flax.linen
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from dualformer_jax import checkpointing
from dualformer_jax import convert
from dualformer_jax import data
from dualformer_jax import metrics_writer
from dualformer_jax import model_checkpoint
from dualformer_jax import models
from dualformer_jax import optim
from dualformer_jax import parallel
from dualformer_jax import profiling
from dualformer_jax import steps
from dualformer_jax.errors import ConfigError

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- set-up


def resolve_dataset(config: ml_collections.ConfigDict) -> str:
  """The TFDS name to read; generates and builds the synthetic dataset if asked to."""
  if not config.data.synthetic:
    if not config.data.name:
      raise ConfigError('config.data.name is empty: name a built TFDS dataset '
                       '(see docs/data.md) or set config.data.synthetic=True.')
    return config.data.name
  name = None
  if jax.process_index() == 0:
    name = data.ensure_synthetic_dataset(config.data.data_dir)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('synthetic dataset built')
    name = data.ensure_synthetic_dataset(config.data.data_dir)  # present now: returns at once
  return name


# config.model fields that set a module attribute of the same name when the family's
# module has it (regularization and compute options), and structural overrides that the
# family's module must have when they are set.
_OPTIONAL_MODEL_FIELDS = ('drop_rate', 'attn_drop_rate', 'drop_path_rate', 'head_dropout_rate',
                          'remat')
_STRUCTURE_FIELDS = ('video_size', 'embed_dims', 'num_heads', 'depths')


def build_model(config: ml_collections.ConfigDict, num_classes: int,
                bn_axis_name: str | None = None):
  """The model `config.model` names (any family), with its overrides."""
  m = config.model
  family = models.family_of_variant(m.variant)
  fields = family.module.__dataclass_fields__
  overrides = {f: m[f] for f in _OPTIONAL_MODEL_FIELDS if f in fields}
  overrides['dtype'] = jnp.dtype(m.dtype)
  if 'bn_axis_name' in fields:
    overrides['bn_axis_name'] = bn_axis_name
  for field in _STRUCTURE_FIELDS:
    if m[field]:
      if field not in fields:
        raise ConfigError(f'config.model.{field} does not apply to the {family.name} family '
                         f'(variant {m.variant!r}); leave it empty.')
      overrides[field] = tuple(m[field])
  if config.token_labelling.teacher or config.token_labelling.labels:  # the TL student
    if 'token_head' not in fields:
      raise ConfigError(f'Token Labelling trains DualFormer students; config.model.variant '
                        f'{m.variant!r} is a {family.name} model.')
    overrides.update(token_head=True,
                     token_dropout_rate=config.token_labelling.token_dropout_rate)
  return models.create_model(m.variant, num_classes=num_classes, **overrides)


def load_pretrained(path: str, model, rng: jax.Array, partial: bool = False,
                    init_variables: dict[str, Any] | None = None) -> dict[str, Any]:
  """Host variables from an official `.pth`/`.safetensors` or one of our checkpoints.

  A classifier that does not fit `model.num_classes` is re-initialized (and logged).
  `partial` (`config.init_partial`): every tensor that is missing from the checkpoint or
  has another shape starts from the model's init instead of failing, each logged by name
  with both shapes (mmcv `load_checkpoint(strict=False)`). The init is
  `init_variables` (host arrays) if given, else `model.init(rng)`.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'config.init_from: {path} does not exist.')
  if os.path.isdir(path):
    source_model, variables = model_checkpoint.load_model(path)
    state_dict = convert.to_pytorch(variables, source_model)  # reuse the converter's checks
  else:
    state_dict = convert.load_state_dict(path)
  if partial:
    init = init_variables
    if init is None:
      example = jnp.zeros((1, *models.input_shape(model), 3), jnp.float32)
      init = jax.jit(lambda r: model.init(r, example, train=False))(rng)
    merged = {}
    for key, value in convert.to_pytorch(flax.linen.unbox(jax.device_get(init)), model).items():
      if key not in state_dict:
        log.warning('init_from: %s started from init (not in the checkpoint).', key)
      elif np.shape(state_dict[key]) != np.shape(value):
        log.warning('init_from: %s started from init (shape: checkpoint %s, model %s).', key,
                    tuple(np.shape(state_dict[key])), tuple(np.shape(value)))
      else:
        value = state_dict[key]
      merged[key] = value
    for key in sorted(set(state_dict) - set(merged)):
      log.warning('init_from: %s in the checkpoint is not in the model: ignored.', key)
    state_dict = merged
  return convert.from_pytorch(state_dict, model, reinit_head=True, rng=rng)


def normalization(config: ml_collections.ConfigDict, family) -> tuple[tuple[float, ...],
                                                                      tuple[float, ...]]:
  """Input `(mean, std)` on a 0-255 scale: `config.data.mean/std`, else the family's."""
  mean = tuple(config.data.mean) or tuple(family.mean)
  std = tuple(config.data.std) or tuple(family.std)
  if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
    raise ValueError(f'config.data.mean and config.data.std need 3 values each (std > 0), '
                     f'got {mean} and {std}.')
  return mean, std


def _check_batch(name: str, batch_size: int, shards: int) -> None:
  per_process = batch_size // jax.process_count()
  if batch_size % jax.process_count() or per_process % max(1, shards // jax.process_count()):
    raise ConfigError(f'{name}={batch_size} must split evenly over {jax.process_count()} '
                     f'processes and {shards} batch shards (devices along data x fsdp).')


@dataclasses.dataclass
class Setup:
  """Everything the loop needs, built from the config."""
  model: Any  # the flax module (any family)
  runtime: Any
  plan: optim.StepPlan
  dataset: str
  info: Any
  num_classes: int
  clips_per_step: int


def setup(config: ml_collections.ConfigDict) -> Setup:
  if config.parallelism not in ('jit', 'pmap'):
    raise ConfigError(f"config.parallelism must be 'jit' or 'pmap', got {config.parallelism!r}.")
  if config.token_labelling.teacher and config.token_labelling.mix_token:
    raise ConfigError('config.token_labelling.mix_token: MixToken is not implemented (the '
                      'official DualFormer recipes train without it); set it to False.')
  dataset = resolve_dataset(config)
  info = data.dataset_info(dataset, config.data.data_dir)
  num_classes = config.model.num_classes if config.model.num_classes > 0 else info.num_classes
  if config.data.train_split not in info.splits:
    raise ConfigError(f'Split {config.data.train_split!r} not in {dataset}: {info.splits}.')
  bn_axis = parallel.PMAP_AXIS if config.parallelism == 'pmap' else None
  model = build_model(config, num_classes, bn_axis)
  plan = optim.plan_steps(info.splits[config.data.train_split], config.train.batch_size,
                          config.train.num_epochs, config.train.warmup_epochs,
                          config.train.grad_accum_steps, config.train.num_steps)
  clip_shape = (1, config.data.clip_len, config.data.crop_size, config.data.crop_size, 3)
  abstract_params = convert.variable_shapes(model)['params']
  family = models.family_of(model)
  tx, schedule = optim.create_optimizer(
      abstract_params, learning_rate=config.train.learning_rate, plan=plan,
      weight_decay=config.train.weight_decay, b1=config.train.b1, b2=config.train.b2,
      backbone_lr_mult=config.train.backbone_lr_mult,
      grad_clip_norm=config.train.grad_clip_norm or None, name_fn=family.param_name,
      head_module=family.head_module, param_groups=tuple(config.train.param_groups),
      optimizer=config.train.optimizer, momentum=config.train.momentum,
      nesterov=config.train.nesterov, warmup_start_factor=config.train.warmup_start_factor,
      cosine_by_epoch=config.train.cosine_by_epoch, min_lr=config.train.min_lr,
      cosine_over_warmup=config.train.cosine_over_warmup)
  data.check_recipe_config(config)  # the recipe options: one-line ConfigErrors
  kwargs = dict(label_smoothing=config.train.label_smoothing,
                grad_accum_steps=config.train.grad_accum_steps,
                normalization=normalization(config, family),
                mixup_alpha=config.train.mixup_alpha)
  eval_options = dict(view_reduction=config.eval.view_reduction)
  if config.parallelism == 'jit':
    mesh = {axis: config.mesh[axis] for axis in ('data', 'fsdp', 'tensor')}
    devices = jax.devices()[:config.mesh.num_devices] if config.mesh.num_devices else None
    runtime = parallel.JitRuntime(model, tx, schedule, num_classes, clip_shape, mesh,
                                  devices=devices, eval_options=eval_options, **kwargs)
  else:
    runtime = parallel.PmapRuntime(model, tx, schedule, num_classes, clip_shape,
                                   eval_options=eval_options, **kwargs)
  if config.token_labelling.teacher or config.token_labelling.labels:
    _use_teacher(config, model, runtime, tx, schedule, normalization(config, family),
                 num_classes)
  _check_batch('config.train.batch_size', config.train.batch_size, runtime.batch_shards)
  _check_batch('config.eval.batch_size', config.eval.batch_size, runtime.batch_shards)
  return Setup(model, runtime, plan, dataset, info, num_classes, config.train.batch_size)


def _use_teacher(config, model, runtime, tx, schedule, norm, num_classes: int) -> None:
  """Token Labelling: loads the frozen teacher and gives `runtime` the step that runs it."""
  # Imported here, as only Token Labelling runs need them.
  from dualformer_jax.token_labelling import teacher as teacher_lib
  from dualformer_jax.token_labelling import train_step as tl_step
  tl = config.token_labelling
  if config.train.mixup_alpha:
    raise ConfigError('config.train.mixup_alpha: mixup is not combined with Token Labelling '
                      '(the teacher labels the clip as seen); set it to 0.')
  if not 1 <= tl.top_k <= num_classes:
    raise ConfigError(f'config.token_labelling.top_k={tl.top_k} must be between 1 and the '
                      f'{num_classes} classes.')
  if tl.temporal_average not in ('interleaved', 'adjacent'):
    raise ConfigError(f"config.token_labelling.temporal_average={tl.temporal_average!r}: "
                      "choose 'interleaved' (official) or 'adjacent'.")
  if tl.labels:  # offline: the soft targets come with each batch (train_iterator)
    if tl.teacher:
      raise ConfigError('config.token_labelling: set teacher (on-line) or labels '
                        '(off-line), not both.')
    _stored_labels(config, num_classes)  # checks them now
    step = tl_step.make_train_step(
        model, None, tx, schedule, gamma=tl.gamma,
        label_smoothing=config.train.label_smoothing,
        grad_accum_steps=config.train.grad_accum_steps,
        axis_name=parallel.PMAP_AXIS if runtime.name == 'pmap' else None, normalization=norm)
    runtime.use_teacher(step, {}, {})
    return
  teacher = teacher_lib.load_teacher(tl.teacher, num_classes=num_classes,
                                     video_size=tuple(model.video_size),
                                     variant=tl.teacher_variant, dtype=model.dtype)
  teacher_lib.check_grids(model, teacher.model)
  step = tl_step.make_train_step(
      model, teacher.model, tx, schedule, gamma=tl.gamma, top_k=tl.top_k,
      temporal=tl.temporal_average, fill=-jnp.inf if tl.top_k_only else 0.0,
      label_smoothing=config.train.label_smoothing,
      grad_accum_steps=config.train.grad_accum_steps,
      axis_name=parallel.PMAP_AXIS if runtime.name == 'pmap' else None, normalization=norm)
  runtime.use_teacher(step, teacher.variables, teacher.boxed_shapes())


def _stored_labels(config, num_classes: int):
  """Offline Token Labelling: the stored labels of the training split, checked."""
  from dualformer_jax.token_labelling import offline  # pylint: disable=import-outside-toplevel
  tl, d = config.token_labelling, config.data
  labels = offline.TokenLabels(tl.labels, d.train_split)
  m = labels.meta
  if m['num_classes'] != num_classes:
    raise ConfigError(f'config.token_labelling.labels: {m["num_classes"]} classes, the '
                      f'student {num_classes}: Token Labelling needs the same classes.')
  if m['clip_len'] != d.clip_len:
    raise ConfigError(f'config.token_labelling.labels: stored for {m["clip_len"]}-frame clips, '
                      f'config.data.clip_len is {d.clip_len}: annotate again.')
  if not 1 <= tl.top_k <= m['top_k']:
    raise ConfigError(f'config.token_labelling.top_k={tl.top_k}: the stored labels keep '
                      f'{m["top_k"]} classes per token.')
  return labels


def train_iterator(config, dataset: str, model=None):
  """The training batches; with `config.token_labelling.labels` (give `model`, the
  student) each batch holds its stored soft `'targets'` `[b, d, h, w, K]` too."""
  d = config.data
  tl = config.token_labelling
  ds = data.create_train_dataset(
      name=dataset, data_dir=d.data_dir, split=d.train_split,
      batch_size=config.train.batch_size // jax.process_count(), clip_len=d.clip_len,
      frame_interval=d.frame_interval, crop_size=d.crop_size, short_side=d.short_side,
      random_resized_crop=d.random_resized_crop, area_range=tuple(d.area_range),
      aspect_range=tuple(d.aspect_range), flip=d.flip, sampling=d.sampling,
      short_side_range=tuple(d.short_side_range) or None, multi_scale_crop=d.multi_scale_crop,
      auto_augment=d.auto_augment, random_erasing_prob=d.random_erasing_prob,
      random_erasing_area=tuple(d.random_erasing_area),
      random_erasing_aspect=tuple(d.random_erasing_aspect), seed=config.seed,
      num_workers=d.num_workers, prefetch=d.prefetch, with_meta=bool(tl.labels))
  if tl.labels:
    from dualformer_jax.token_labelling import offline  # pylint: disable=import-outside-toplevel
    from dualformer_jax.token_labelling import teacher as teacher_lib  # pylint: disable=import-outside-toplevel
    labels = _stored_labels(config, model.num_classes)
    ds = ds.map(offline.AddTargets(labels, teacher_lib.token_grid(model), top_k=tl.top_k,
                                   fill=-np.inf if tl.top_k_only else 0.0,
                                   temporal=tl.temporal_average))
  return iter(ds)


# -------------------------------------------------------------------------- evaluation


def evaluate(config, s: Setup, state, split: str | None = None) -> dict[str, float]:
  """The whole split, `eval_num_clips x eval_num_crops` views per video."""
  d = config.data
  eval_data = data.create_eval_dataset(
      name=s.dataset, data_dir=d.data_dir, split=split or d.eval_split,
      batch_size=config.eval.batch_size // jax.process_count(), clip_len=d.clip_len,
      frame_interval=d.frame_interval, num_clips=d.eval_num_clips,
      num_crops=d.eval_num_crops, crop_size=d.eval_crop_size, short_side=d.eval_short_side,
      sampling=d.sampling, num_workers=d.num_workers)
  totals = None
  for batch in eval_data:
    sums = s.runtime.fetch(s.runtime.eval_step(state, batch))
    totals = sums if totals is None else jax.tree_util.tree_map(np.add, totals, sums)
  if totals is None:
    raise ValueError(f'The eval split {split or d.eval_split!r} of {s.dataset} is empty.')
  return steps.summarize_eval(totals)


# ------------------------------------------------------------------------ preemption


class StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop polls (all processes agree on it)."""

  def __init__(self):
    self.received = None
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def should_stop(self) -> bool:
    local = self.received is not None
    if jax.process_count() > 1:
      flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
      return bool(np.any(flags))
    return local

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


# ------------------------------------------------------------------------------ loop


def _eval_line(step: int, metrics: dict[str, Any]) -> str:
  """`step 432: eval top1 93.75, top5 100.00, ...` (floats to 2 decimals)."""
  return f'step {step}: eval ' + ', '.join(
      f'{k} {v:.2f}' if isinstance(v, float) else f'{k} {v}' for k, v in metrics.items())


def _flush(pending: list, runtime) -> list[tuple[int, dict[str, float]]]:
  """Fetches queued step metrics; raises on the first non-finite loss."""
  rows = []
  for step, metrics in pending:
    values = {k: float(v) for k, v in runtime.fetch(metrics).items()}
    if not np.isfinite(values['loss']):
      raise NonFiniteLossError(
          f'Loss is {values["loss"]} at step {step}; stopping. Checkpoints written before '
          'this step are kept; lower the learning rate or check the data.')
    rows.append((step, values))
  pending.clear()
  return rows


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming if `workdir` has checkpoints) and evaluates; returns final metrics."""
  os.makedirs(workdir, exist_ok=True)
  s = setup(config)
  runtime, plan = s.runtime, s.plan
  log.info('%s/%s, %d classes; %s with %d devices; %d train videos, %d steps '
           '(%d per epoch), batch %d.', models.family_of(s.model).name, config.model.variant,
           s.num_classes, runtime.name, jax.device_count(), s.info.splits[config.data.train_split], plan.total_micro_steps,
           plan.steps_per_epoch * plan.grad_accum_steps, config.train.batch_size)

  rng = jax.random.PRNGKey(config.seed)
  init_rng, head_rng = jax.random.split(rng)
  state = runtime.init_state(init_rng)
  data_iter = train_iterator(config, s.dataset, s.model)
  checkpointer = checkpointing.TrainCheckpointer(os.path.join(workdir, 'checkpoints'),
                                                 keep=config.checkpoint.keep,
                                                 async_save=config.checkpoint.async_save)
  model_config = models.model_config(s.model)
  restored = checkpointer.restore(runtime.abstract_state(runtime.for_checkpoint(state))
                                  if runtime.name == 'jit' else runtime.abstract_state(state),
                                  data_iter)
  if restored is not None:
    state = runtime.from_checkpoint(restored[0])
    log.info('Resumed from %s at step %d.', checkpointer.directory, restored[1])
  elif config.init_from and config.get('init_from_2d'):
    raise ValueError('config.init_from and config.init_from_2d are both set: choose one '
                     '(init_from: a video checkpoint; init_from_2d: a 2D image one).')
  elif config.get('init_from_2d'):
    pretrained, report = convert.inflate_with_report(config.init_from_2d, s.model, head_rng)
    state = runtime.with_variables(state, pretrained['params'], pretrained['batch_stats'])
    log.info('Initialized by 2D -> 3D inflation of %s (new head):\n%s', config.init_from_2d,
             report.summary())
  elif config.init_from:
    pretrained = load_pretrained(config.init_from, s.model, head_rng,
                                 partial=config.init_partial)
    state = runtime.with_variables(state, pretrained['params'], pretrained['batch_stats'])
    log.info('Initialized from %s.', config.init_from)

  writer = metrics_writer.MetricsWriter(workdir)
  start = int(runtime.fetch(state.step) if runtime.name == 'jit' else
              jax.device_get(state.step[0]))
  total = plan.total_micro_steps
  progress = metrics_writer.Progress(total, start, s.clips_per_step)
  stop = StopSignal()
  profiler = profiling.StepProfiler(workdir, config.profile.start_step,
                                    config.profile.num_steps)
  pending: list = []
  final: dict[str, Any] = {'step': start}
  eval_metrics = None

  def save(metrics=None, force=False):
    checkpointer.save(runtime.for_checkpoint(state), data_iter, model_config, metrics=metrics,
                      force=force)

  def log_rows(rows):
    for step, values in rows:
      values['clips_per_sec'] = progress.clips_per_sec(step)
      writer.write(step, {k: values[k] for k in
                          ('loss', 'loss_cls', 'loss_token', 'lr', 'grad_norm', 'accuracy',
                           'clips_per_sec') if k in values}, 'train')
      progress.show(loss=values['loss'], lr=values['lr'], clips_s=values['clips_per_sec'])

  try:
    step = start
    while step < total:
      batch = next(data_iter)
      with profiler.step(step):
        state, metrics = runtime.train_step(state, batch)
      profiler.after_step(step, state)
      step += 1
      pending.append((step, metrics))
      last = step == total
      if step % config.train.log_every_steps == 0 or last:
        log_rows(_flush(pending, runtime)[-1:])
      progress.update(step)
      evaluate_now = config.eval.every_steps and step % config.eval.every_steps == 0
      if evaluate_now and not last:
        _flush(pending, runtime)
        eval_metrics = evaluate(config, s, state)
        writer.write(step, eval_metrics, 'eval')
        progress.write(_eval_line(step, eval_metrics))
        save(metrics=eval_metrics, force=True)
      elif (config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0
            and not last):  # the last step is saved below, with its eval metrics
        _flush(pending, runtime)
        save()
      if stop.should_stop():
        _flush(pending, runtime)
        progress.write(f'{stop.received or "stop signal"} received: saving step {step} '
                       'and exiting.')
        if checkpointer.latest_step() != step:
          save(force=True)
        checkpointer.wait_until_finished()
        final.update(step=step, preempted=True)
        return final

    _flush(pending, runtime)
    if config.eval.at_end:
      eval_metrics = evaluate(config, s, state)
      writer.write(step, eval_metrics, 'eval')
      progress.write(_eval_line(step, eval_metrics))
    if checkpointer.latest_step() != step:
      save(metrics=eval_metrics, force=True)
    checkpointer.wait_until_finished()
    final.update(step=step, **(eval_metrics or {}))
    return final
  finally:
    profiler.stop()
    progress.close()
    stop.restore()
    checkpointer.wait_until_finished()
    writer.close()


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                        checkpoint: str | None = None) -> dict[str, Any]:
  """`--mode eval`: evaluates the latest checkpoint in `workdir` (or `checkpoint`, a
  step directory or one of our model checkpoints) on `config.data.eval_split`."""
  s = setup(config)
  state = s.runtime.init_state(jax.random.PRNGKey(config.seed))
  if checkpoint is None:
    directory = os.path.join(workdir, 'checkpoints')
    steps_found = [int(p) for p in os.listdir(directory) if p.isdigit()] \
        if os.path.isdir(directory) else []
    if not steps_found:
      raise FileNotFoundError(f'No checkpoint in {directory}: train first or pass --checkpoint.')
    checkpoint = os.path.join(directory, str(max(steps_found)))
  _, variables = model_checkpoint.load_model(checkpoint)
  state = s.runtime.with_variables(state, variables['params'], variables['batch_stats'])
  metrics = evaluate(config, s, state)
  writer = metrics_writer.MetricsWriter(workdir)
  writer.write(-1, {**metrics, 'checkpoint': str(checkpoint)}, 'eval')
  writer.close()
  return metrics
