"""Host-side clip augmentations of the LVT recipes (numpy / PIL, channels-last uint8).

Every function takes the per-example ``np.random.Generator`` that grain passes, so the
same seed gives the same clip. One draw per clip: every frame gets the same crop, the same
AutoAugment ops and magnitudes, and the same erased box.

* ``multi_scale_crop_box``: TSN multi-scale crop (the LVT Kinetics training crop);
* ``jitter_short_side``: short side uniform in a range (the LVT SSv2 scale jitter);
* ``auto_augment``: timm's "v0" ImageNet AutoAugment policy, per clip;
* ``rand_augment``: timm's RandAugment (``rand-m9-mstd0.5``), per clip;
* ``random_erasing``: one zero-filled box, the same on every frame.

``check_recipe_config`` validates the recipe options of a config (one-line errors).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from dualformer_jax.errors import ConfigError

__all__ = [
    "AUTO_AUGMENT_POLICIES",
    "RAND_AUGMENT_OPS",
    "TSN_SCALES",
    "augment_policy",
    "auto_augment",
    "check_recipe_config",
    "jitter_short_side",
    "multi_scale_crop_box",
    "parse_rand_augment",
    "rand_augment",
    "random_erasing",
]

#: TSN ``GroupMultiScaleCrop`` scales (fractions of the short side).
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)

#: timm's "v0" ImageNet policy (TPU EfficientNet): 25 sub-policies of two
#: ``(op, probability, magnitude 0-10)``.
_V0 = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateYRel", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),  # 0 bits kept: a black clip
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)
AUTO_AUGMENT_POLICIES = {"v0": _V0}

_MAX_LEVEL = 10.0
_SIGNED = {"Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3, "TranslateXRel": 0.45,
           "TranslateYRel": 0.45}  # magnitude 10 -> this, sign drawn per clip
_GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
              "TranslateX", "TranslateY")
_FILTERS = (Image.BILINEAR, Image.BICUBIC)


def multi_scale_crop_box(h: int, w: int, size: int, rng: np.random.Generator,
                         scales: Sequence[float] = TSN_SCALES, max_distort: int = 1
                         ) -> tuple[int, int, int, int]:
    """TSN ``GroupMultiScaleCrop`` box ``(left, top, right, bottom)`` in an ``h x w`` frame.

    Crop sides are ``int(min(h, w) * s)`` for ``s`` in ``scales`` (a side within 3 px of
    ``size`` becomes ``size``); width and height are a random pair of them at most
    ``max_distort`` steps apart in ``scales``; the box sits at one of 13 fixed offsets
    (4 corners, centre, 4 edge centres, 4 quarter points). Resize it to ``size``.
    """
    base = min(h, w)
    sides = [size if abs(int(base * s) - size) < 3 else int(base * s) for s in scales]
    pairs = [(cw, ch) for i, ch in enumerate(sides) for j, cw in enumerate(sides)
             if abs(i - j) <= max_distort]
    cw, ch = pairs[int(rng.integers(len(pairs)))]
    cw, ch = min(cw, w), min(ch, h)
    ws, hs = (w - cw) // 4, (h - ch) // 4
    offsets = ((0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs),
               (0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
               (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs))
    x, y = offsets[int(rng.integers(len(offsets)))]
    return x, y, x + cw, y + ch


def jitter_short_side(short_side_range: Sequence[int], rng: np.random.Generator) -> int:
    """SlowFast's scale jitter: ``int(round(uniform(lo, hi)))`` pixels of short side."""
    lo, hi = short_side_range
    return int(round(rng.uniform(lo, hi)))


def _level_args(name: str, magnitude: float, rng: np.random.Generator,
                translate_const: float) -> tuple:
    """timm's magnitude -> argument rules (a signed one draws its sign)."""
    level = magnitude / _MAX_LEVEL
    if name in _SIGNED or name in ("TranslateX", "TranslateY"):
        value = level * (_SIGNED.get(name) or translate_const)
        return (-value if rng.random() > 0.5 else value,)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (level * 1.8 + 0.1,)
    if name == "Posterize":
        return (int(level * 4),)
    if name == "Solarize":
        return (int(level * 256),)
    if name == "SolarizeAdd":
        return (int(level * 110),)
    return ()


def _apply(img: Image.Image, name: str, args: tuple, resample, fill) -> Image.Image:
    """One op on one PIL RGB frame."""
    if name == "Rotate":
        return img.rotate(args[0], resample=resample, fillcolor=fill)
    if name in _GEOMETRIC:
        v = args[0]
        if name == "TranslateXRel":
            v *= img.size[0]
        elif name == "TranslateYRel":
            v *= img.size[1]
        matrix = {"ShearX": (1, v, 0, 0, 1, 0), "ShearY": (1, 0, 0, v, 1, 0),
                  "TranslateXRel": (1, 0, v, 0, 1, 0), "TranslateX": (1, 0, v, 0, 1, 0),
                  "TranslateYRel": (1, 0, 0, 0, 1, v), "TranslateY": (1, 0, 0, 0, 1, v)}[name]
        return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=fill)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Posterize":
        if args[0] >= 8:
            return img
        mask = (0xFF << (8 - args[0])) & 0xFF  # keep the top bits; 0 bits: black, as PIL < 9
        return Image.fromarray(np.asarray(img) & np.uint8(mask))
    if name == "Solarize":
        return ImageOps.solarize(img, args[0])
    if name == "SolarizeAdd":
        lut = [min(255, i + args[0]) if i < 128 else i for i in range(256)]
        return img.point(lut * 3)
    enhance = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
               "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}
    return enhance[name](img).enhance(args[0])


def auto_augment(clip: np.ndarray, rng: np.random.Generator, policy: str = "v0", *,
                 translate_const: float = 100.0, fill: tuple[int, int, int] = (128, 128, 128)
                 ) -> np.ndarray:
    """AutoAugment on a clip ``uint8 [t, h, w, 3]``, the same ops on every frame.

    Draws once per clip: the sub-policy, each op's apply/skip (``rng.random() <= p``
    applies), its sign and the resampling filter of geometric ops (bilinear or bicubic;
    the official code draws the filter per frame). Geometric ops fill with ``fill``;
    relative translations move by ``magnitude / 10 * 0.45`` of the frame side.
    """
    if policy not in AUTO_AUGMENT_POLICIES:
        raise ValueError(f"unknown AutoAugment policy {policy!r}; choose one of "
                         f"{sorted(AUTO_AUGMENT_POLICIES)}.")
    table = AUTO_AUGMENT_POLICIES[policy]
    sub = table[int(rng.integers(len(table)))]
    ops = []
    for name, prob, magnitude in sub:
        if prob < 1.0 and rng.random() > prob:
            continue
        ops.append((name, _level_args(name, magnitude, rng, translate_const)))
    resample = _FILTERS[int(rng.integers(len(_FILTERS)))]
    return _apply_to_frames(clip, ops, resample, fill)


#: timm's RandAugment op set (``_RAND_TRANSFORMS``), drawn uniformly with replacement.
RAND_AUGMENT_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                    "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX",
                    "ShearY", "TranslateXRel", "TranslateYRel")


def parse_rand_augment(spec: str) -> dict:
    """timm's ``rand-m9-mstd0.5[-n2][-p0.5]`` -> ``dict(magnitude, magnitude_std, num_ops,
    prob)`` (defaults: 2 ops, each applied with probability 0.5, no magnitude noise)."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"RandAugment spec {spec!r} must start with 'rand-' (e.g. "
                         "'rand-m9-mstd0.5').")
    out = dict(magnitude=None, magnitude_std=0.0, num_ops=2, prob=0.5)
    keys = (("mstd", "magnitude_std", float), ("m", "magnitude", float),
            ("n", "num_ops", int), ("p", "prob", float))
    for part in parts[1:]:
        for prefix, key, kind in keys:
            if part.startswith(prefix):
                try:
                    out[key] = kind(part[len(prefix):])
                except ValueError:
                    raise ValueError(f"RandAugment spec {spec!r}: {part!r} is not "
                                     f"{prefix}<number>.") from None
                break
        else:
            raise ValueError(f"RandAugment spec {spec!r}: unknown part {part!r} (use m, mstd, "
                             "n, p).")
    if out["magnitude"] is None:
        raise ValueError(f"RandAugment spec {spec!r} needs a magnitude (e.g. 'rand-m9').")
    if out["num_ops"] < 1 or not 0.0 <= out["prob"] <= 1.0:
        raise ValueError(f"RandAugment spec {spec!r}: n must be >= 1 and p in [0, 1].")
    return out


def rand_augment(clip: np.ndarray, rng: np.random.Generator, spec: str = "rand-m9-mstd0.5",
                 *, translate_const: float = 100.0,
                 fill: tuple[int, int, int] = (128, 128, 128)) -> np.ndarray:
    """timm's RandAugment on a clip ``uint8 [t, h, w, 3]``, the same ops on every frame.

    Draws once per clip: ``n`` ops uniformly from ``RAND_AUGMENT_OPS`` (with replacement),
    each applied with probability ``p``, its magnitude ``N(m, mstd)`` clipped to [0, 10],
    its sign, and the resampling filter of geometric ops. Magnitude rules as AutoAugment's.
    """
    cfg = parse_rand_augment(spec)
    ops = []
    for index in rng.integers(len(RAND_AUGMENT_OPS), size=cfg["num_ops"]):
        name = RAND_AUGMENT_OPS[int(index)]
        if cfg["prob"] < 1.0 and rng.random() > cfg["prob"]:
            continue
        magnitude = cfg["magnitude"]
        if cfg["magnitude_std"] > 0:
            magnitude = rng.normal(magnitude, cfg["magnitude_std"])
        magnitude = min(max(float(magnitude), 0.0), _MAX_LEVEL)
        ops.append((name, _level_args(name, magnitude, rng, translate_const)))
    resample = _FILTERS[int(rng.integers(len(_FILTERS)))]
    return _apply_to_frames(clip, ops, resample, fill)


def augment_policy(clip: np.ndarray, rng: np.random.Generator, policy: str) -> np.ndarray:
    """``config.data.auto_augment``: an AutoAugment policy (``'v0'``) or a RandAugment spec
    (``'rand-m9-mstd0.5'``), as timm's ``--aa`` takes them."""
    if policy.startswith("rand"):
        return rand_augment(clip, rng, policy)
    return auto_augment(clip, rng, policy)


def _apply_to_frames(clip, ops, resample, fill) -> np.ndarray:
    if not ops:
        return clip
    out = np.empty_like(clip)
    for t in range(clip.shape[0]):
        img = Image.fromarray(clip[t])
        for name, args in ops:
            img = _apply(img, name, args, resample, fill)
        out[t] = np.asarray(img)
    return out


def random_erasing(clip: np.ndarray, rng: np.random.Generator, prob: float = 0.5, *,
                   area_range: Sequence[float] = (0.02, 1 / 3),
                   aspect_range: Sequence[float] = (0.3, 1 / 0.3), max_attempts: int = 10
                   ) -> np.ndarray:
    """With probability ``prob``, zeros one box of a clip ``uint8 [t, h, w, 3]`` on every
    frame: area fraction uniform in ``area_range``, aspect (h / w) log-uniform in
    ``aspect_range``, position uniform; the first of ``max_attempts`` draws that fits
    (timm ``RandomErasing`` geometry, ``mode='const'`` with 0, one box)."""
    if prob <= 0 or rng.random() >= prob:
        return clip
    _, h, w, _ = clip.shape
    log_ar = (math.log(aspect_range[0]), math.log(aspect_range[1]))
    for _ in range(max_attempts):
        area = rng.uniform(*area_range) * h * w
        ratio = math.exp(rng.uniform(*log_ar))
        eh = int(round(math.sqrt(area * ratio)))
        ew = int(round(math.sqrt(area / ratio)))
        if 0 < eh < h and 0 < ew < w:
            top = int(rng.integers(0, h - eh + 1))
            left = int(rng.integers(0, w - ew + 1))
            out = clip.copy()
            out[:, top:top + eh, left:left + ew] = 0  # [t, eh, ew, 3]
            return out
    return clip


def _pair(value, name: str, kind=float) -> tuple:
    try:
        lo, hi = (kind(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be two numbers (low, high), got {value!r}.") from None
    if not 0 < lo <= hi:
        raise ConfigError(f"{name} must satisfy 0 < low <= high, got {value!r}.")
    return lo, hi


def check_recipe_config(config) -> None:
    """One-line `ConfigError`s for the recipe options of `config.data/train/eval`."""
    d = config.data
    if d.sampling not in ("dense", "segment"):
        raise ConfigError(f"config.data.sampling must be 'dense' or 'segment', got {d.sampling!r}.")
    if d.sampling == "segment" and d.eval_num_clips not in (1, 2):
        raise ConfigError("config.data.eval_num_clips must be 1 or 2 with segment sampling "
                          f"(the middle, then the start of each segment), got {d.eval_num_clips}.")
    if d.auto_augment.startswith("rand"):
        try:
            parse_rand_augment(d.auto_augment)
        except ValueError as e:
            raise ConfigError(f"config.data.auto_augment: {e}") from None
    elif d.auto_augment and d.auto_augment not in AUTO_AUGMENT_POLICIES:
        raise ConfigError(f"config.data.auto_augment must be '', one of "
                          f"{sorted(AUTO_AUGMENT_POLICIES)} (AutoAugment) or a RandAugment "
                          f"spec like 'rand-m9-mstd0.5', got {d.auto_augment!r}.")
    if not 0.0 <= d.random_erasing_prob <= 1.0:
        raise ConfigError(f"config.data.random_erasing_prob must be in [0, 1], got "
                          f"{d.random_erasing_prob}.")
    lo, hi = _pair(d.random_erasing_area, "config.data.random_erasing_area")
    if hi >= 1.0:
        raise ConfigError(f"config.data.random_erasing_area must be below 1, got "
                          f"{tuple(d.random_erasing_area)}.")
    _pair(d.random_erasing_aspect, "config.data.random_erasing_aspect")
    if d.short_side_range:
        _pair(d.short_side_range, "config.data.short_side_range", int)
    if d.multi_scale_crop and d.random_resized_crop:
        raise ConfigError("config.data.multi_scale_crop and config.data.random_resized_crop "
                          "are both True: choose one train crop.")
    if config.train.mixup_alpha < 0:
        raise ConfigError(f"config.train.mixup_alpha must be >= 0 (0: off), got "
                          f"{config.train.mixup_alpha}.")
    if config.eval.view_reduction not in ("mean_softmax", "sum_logits"):
        raise ConfigError("config.eval.view_reduction must be 'mean_softmax' or 'sum_logits', "
                          f"got {config.eval.view_reduction!r}.")
