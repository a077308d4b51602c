"""Model families side by side: one registry that every shared tool asks.

A family (DualFormer, LVT, Mobile-Former) lives in its own folder under `models/` and
registers one `Family` object: its top-level module class, its variants table, the
architecture fields stored with checkpoints, its conversion rules and its FLOPs count.
Training, conversion, predict, the FLOPs report and the benchmarks only call the
functions below; adding a family means adding a folder and one import in
`models/__init__.py`.

    model = models.create_model('tiny', num_classes=400)        # DualFormer
    model = models.create_model('lvt_k400', num_classes=400)    # Linear Video Transformer
    models.family_of(model).name                                 # 'lvt'
"""

import dataclasses
import difflib
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

Variables = dict[str, Any]


def _video_size(model: nn.Module) -> tuple[int, ...]:
  return tuple(model.video_size)


@dataclasses.dataclass(frozen=True)
class Family:
  """What the shared stack needs to know about one model family.

  Attributes:
    name: the family's name, e.g. `'dualformer'`; stored with checkpoints.
    module: the top-level classifier class. Its instances take channels-last inputs
      `[b, *input_shape, 3]`, `__call__(x, train)` returns logits `[b, num_classes]` and
      `extract_features(x)` the last feature map (`[b, d, h, w, c]` for video models).
    variants: variant name -> module attributes (names unique across families).
    architecture_fields: attributes that define the architecture (stored with
      checkpoints as JSON, `num_classes` included).
    from_pytorch: `(state_dict, model, *, reinit_head, rng) -> variables`, where
      `state_dict` is a `{key: np.ndarray}` already unwrapped from its file.
    to_pytorch: `(variables, model) -> {key: np.ndarray}`, the official layout.
    count_flops: `(model, input_shape) -> {kind: multiply-adds}` (fvcore convention),
      or None.
    infer_variant: `(state_dict) -> variant name` for official files, or None.
    input_shape: `(model) -> (T, H, W)` (or `(H, W)` for image models), the input the
      model is built for or, where any size works, its default.
    official: variant -> facts quoted from the official code or paper (e.g.
      `{'backbone_params': ..., 'gflops': ..., 'top1': ...}`), for reports and tests.
    mean, std: the input normalization the official checkpoints expect (0-255 scale).
    head_prefix: state-dict prefix of the classifier (dropped with `reinit_head`).
    head_module: name of the classifier's top-level entry in `params` (fine-tuning
      recipes give the rest, the backbone, another learning rate).
    param_name: `(flax path) -> official parameter name`, for the optimizer's
      parameter groups (decay and learning-rate rules are written on official names).
    cam_features: `/`-separated path of the submodule whose `__call__` output is the
      feature map `[b, *grid, c]` the head pools; Grad-CAM weights it by the gradient
      of a class logit (`attention_maps.class_activation`).
    profile_categories: `(category, regex)` pairs, first match wins, that name the layer
      kinds of a step's profile from an XLA op's `op_name` (`benchmarks/profile_step.py`).
  """
  name: str
  module: type
  variants: Mapping[str, Mapping[str, Any]]
  architecture_fields: tuple[str, ...]
  from_pytorch: Callable[..., Variables]
  to_pytorch: Callable[..., dict[str, Any]]
  count_flops: Callable[..., dict[str, int]] | None = None
  infer_variant: Callable[[Mapping[str, Any]], str] | None = None
  input_shape: Callable[[nn.Module], tuple[int, ...]] = _video_size
  official: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
  std: tuple[float, float, float] = (58.395, 57.12, 57.375)
  head_prefix: str = 'cls_head.'
  head_module: str = 'head'
  param_name: Callable[[tuple[str, ...]], str] = lambda path: '.'.join(path)
  cam_features: str = 'backbone'
  profile_categories: tuple[tuple[str, str], ...] = ()


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
  """Adds `family`; its variant names must be new."""
  if family.name in _FAMILIES:
    raise ValueError(f'Model family {family.name!r} is registered twice.')
  taken = {v: f.name for f in _FAMILIES.values() for v in f.variants}
  clash = sorted(set(family.variants) & set(taken))
  if clash:
    raise ValueError(f'Variants {clash} of {family.name!r} are already registered.')
  _FAMILIES[family.name] = family
  return family


def families() -> dict[str, Family]:
  return dict(_FAMILIES)


def all_variants() -> dict[str, str]:
  """Every variant name -> its family's name."""
  return {v: f.name for f in _FAMILIES.values() for v in f.variants}


class UnknownVariantError(ValueError):
  """A variant name no family has; the message lists the choices."""


def family_of_variant(variant: str) -> Family:
  for family in _FAMILIES.values():
    if variant in family.variants:
      return family
  choices = sorted(all_variants())
  close = difflib.get_close_matches(variant, choices, n=1)
  hint = f' (did you mean {close[0]!r}?)' if close else ''
  raise UnknownVariantError(f'unknown model variant {variant!r}{hint}; choose one of '
                            f'{", ".join(choices)}')


def family_of(model: nn.Module) -> Family:
  """The family of a module instance."""
  for family in _FAMILIES.values():
    if isinstance(model, family.module):
      return family
  raise TypeError(f'{type(model).__name__} belongs to no registered model family.')


def variant_kwargs(variant: str) -> dict[str, Any]:
  """The architecture attributes of a named variant (any family)."""
  return dict(family_of_variant(variant).variants[variant])


def create_model(variant: str, num_classes: int = 400, **overrides: Any) -> nn.Module:
  """The model of any family with the hyper-parameters of `variant`.

  `overrides` replaces module attributes (e.g. `drop_path_rate=0.1`,
  `dtype=jnp.bfloat16`); an attribute the family's module does not have is an error.
  """
  family = family_of_variant(variant)
  kwargs = dict(family.variants[variant])
  kwargs.update(overrides)
  fields = family.module.__dataclass_fields__
  unknown = sorted(set(kwargs) - set(fields))
  if unknown:
    raise TypeError(f'Unknown {family.module.__name__} arguments: {unknown}')
  return family.module(num_classes=num_classes, **kwargs)


def model_config(model: nn.Module) -> dict[str, Any]:
  """The JSON-serializable architecture of `model`, with its family's name."""
  family = family_of(model)
  to_list = lambda v: [to_list(x) for x in v] if isinstance(v, (tuple, list)) else v
  config = {'family': family.name}
  config.update({f: to_list(getattr(model, f)) for f in family.architecture_fields})
  return config


def model_from_config(config: Mapping[str, Any], **overrides: Any) -> nn.Module:
  """Inverse of `model_config`; `overrides` sets e.g. dtype or dropout rates.

  Configs without a `family` (checkpoints written before families existed) are
  DualFormers.
  """
  config = dict(config)
  name = config.pop('family', 'dualformer')
  if name not in _FAMILIES:
    raise ValueError(f'checkpoint of model family {name!r}, which this version does not '
                     f'have (families: {", ".join(sorted(_FAMILIES))}).')
  to_tuple = lambda v: tuple(to_tuple(x) for x in v) if isinstance(v, (tuple, list)) else v
  kwargs = {k: to_tuple(v) for k, v in config.items()}
  kwargs.update(overrides)
  return _FAMILIES[name].module(**kwargs)


def head_classes(family: Family, state_dict: Mapping[str, Any]) -> int | None:
  """Rows of an official file's classifier (the 2-D weight under the family's head
  prefix), or None if it has none."""
  for key in sorted(state_dict):
    value = state_dict[key]
    if key.startswith(family.head_prefix) and key.endswith('weight') and value.ndim == 2:
      return int(value.shape[0])
  return None


def input_shape(model: nn.Module) -> tuple[int, ...]:
  """The input `model` is built for, without batch and channels: `(T, H, W)` or `(H, W)`."""
  return tuple(family_of(model).input_shape(model))


def variable_shapes(model: nn.Module) -> Variables:
  """The model's variables as `ShapeDtypeStruct`s (no computation, no memory)."""
  example = jnp.zeros((1, *input_shape(model), 3), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), example, train=False))
  return nn.unbox(shapes)
