"""Neighbourhood association: the parameter-free temporal and spatial shifts of LVT.

Both act on channels-last token grids `[b, t, h, w, c]` whose channels are in
concatenated-head order (`c = head * e + j`); channels outside the shifted groups are
copied unchanged.
"""

import jax
import jax.numpy as jnp

# (row, column) offset of the source token and whether a source off the grid gives zero
# (True) or the unshifted value (False), per channel group, for shift size 1; the offsets
# scale with the shift size.
_BASE_GROUPS = (
    ((1, 0), True), ((-1, 0), True), ((0, 1), True), ((0, -1), True),
    ((-1, -1), False), ((1, 1), False), ((-1, 1), False), ((1, -1), False),
)
# The 16 extra groups of shift size 2 (absolute offsets, unshifted value at the border).
_SIZE2_EXTRA = tuple(((dr, dc), False) for dr, dc in (
    (-2, -1), (-2, 1), (-1, -2), (1, -2), (2, -1), (2, 1), (-1, 2), (1, 2),
    (1, 0), (-1, 0), (0, 1), (0, -1), (-1, -1), (1, 1), (-1, 1), (1, -1)))


def _take_along(x: jax.Array, axis: int, offset: int) -> tuple[jax.Array, jax.Array]:
  """`y[i] = x[i + offset]` along `axis`, zero where `i + offset` is off the axis; and
  the validity mask (broadcastable to `x`)."""
  size = x.shape[axis]
  if offset == 0:
    return x, jnp.ones((), bool)
  pad = [(0, 0)] * x.ndim
  pad[axis] = (max(-offset, 0), max(offset, 0))
  padded = jnp.pad(x, pad)
  start = max(offset, 0)
  y = jax.lax.slice_in_dim(padded, start, start + size, axis=axis)
  index = jnp.arange(size) + offset
  valid = (index >= 0) & (index < size)
  valid = valid.reshape([size if a == axis % x.ndim else 1 for a in range(x.ndim)])
  return y, valid


def temporal_shift(x: jax.Array, shift_div: int, num_segments: int) -> jax.Array:
  """`TemporalShift` over frames in groups of `num_segments`: `[b, t, h, w, c]` -> same.

  With `f = c // shift_div` and `p` a frame's position in its group, channels `[0, f)`
  take the frame at `p + 1` and `[f, 2f)` the frame at `p - 1` (zero past the group's
  ends); the rest are unchanged. (Official: groups along the flattened `(b, t)` axis;
  with `t` a multiple of `num_segments`, the same as groups within each clip.)
  """
  b, t, h, w, c = x.shape
  if t % num_segments:
    raise ValueError(f'temporal shift: {t} frames are not a multiple of num_segments='
                     f'{num_segments}')
  f = c // shift_div
  groups = x.reshape(b, t // num_segments, num_segments, h, w, c)
  from_next, _ = _take_along(groups[..., :f], 2, 1)  # [b, g, s, h, w, f]
  from_prev, _ = _take_along(groups[..., f:2 * f], 2, -1)
  out = jnp.concatenate([from_next, from_prev, groups[..., 2 * f:]], axis=-1)
  return out.reshape(b, t, h, w, c)


def spatial_groups(shift_size: int) -> tuple[tuple[tuple[int, int], bool], ...]:
  """Source offsets and zero-fill flags of the channel groups of `SpatialShift`."""
  base = tuple(((dr * shift_size, dc * shift_size), zero) for (dr, dc), zero in _BASE_GROUPS)
  return base + _SIZE2_EXTRA if shift_size == 2 else base


def spatial_group_width(channels: int, shift_size: int) -> int:
  """Channels per group: `c // (2 * ((2s + 1)^2 - 1))` (the official `n_div` is ignored)."""
  return channels // (2 * ((2 * shift_size + 1) ** 2 - 1))


def spatial_shift(x: jax.Array, shift_size: int) -> jax.Array:
  """`SpatialShift` on each frame's token grid: `[b, t, h, w, c]` -> same.

  Channel group `g` (width `spatial_group_width`) at `(row, col)` takes the token at
  `(row + dr, col + dc)` for the group's offset; off the grid the 4 axial groups of the
  base 8 are zero-filled and every other group keeps its unshifted value (official quirk).
  """
  c = x.shape[-1]
  f = spatial_group_width(c, shift_size)
  parts = []
  for g, ((dr, dc), zero_fill) in enumerate(spatial_groups(shift_size)):
    group = x[..., g * f:(g + 1) * f]  # [b, t, h, w, f]
    rows, row_ok = _take_along(group, 2, dr)
    shifted, col_ok = _take_along(rows, 3, dc)
    if not zero_fill:
      shifted = jnp.where(row_ok & col_ok, shifted, group)
    parts.append(shifted)
  used = len(parts) * f
  parts.append(x[..., used:])
  return jnp.concatenate(parts, axis=-1)
