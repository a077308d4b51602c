"""Neighbourhood association: the parameter-free temporal and spatial shifts of LVT.

Both act on channels-last token grids `[b, t, h, w, c]` whose channels are in
concatenated-head order (`c = head * e + j`); channels outside the shifted groups are
copied unchanged.
"""

import jax
import jax.numpy as jnp
import numpy as np

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
  groups = x.reshape(b, t // num_segments, num_segments, h, w, c)  # [b, g, s, h, w, c]
  zero_after = ((0, 0), (0, 0), (0, 1), (0, 0), (0, 0), (0, 0))  # one zero frame
  zero_before = ((0, 0), (0, 0), (1, 0), (0, 0), (0, 0), (0, 0))
  from_next = jnp.pad(groups[:, :, 1:, ..., :f], zero_after)
  from_prev = jnp.pad(groups[:, :, :-1, ..., f:2 * f], zero_before)
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
  _, _, h, w, c = x.shape
  f = spatial_group_width(c, shift_size)
  groups = spatial_groups(shift_size)
  used = len(groups) * f
  p = max(max(abs(dr), abs(dc)) for (dr, dc), _ in groups)
  padded = jnp.pad(x[..., :used], ((0, 0), (0, 0), (p, p), (p, p), (0, 0)))  # zeros outside
  rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
  parts = []
  for g, ((dr, dc), zero_fill) in enumerate(groups):
    channels = slice(g * f, (g + 1) * f)
    shifted = padded[:, :, p + dr:p + dr + h, p + dc:p + dc + w, channels]  # [b, t, h, w, f]
    if not zero_fill:
      inside = (rows + dr >= 0) & (rows + dr < h) & (cols + dc >= 0) & (cols + dc < w)
      shifted = jnp.where(inside[:, :, None], shifted, x[..., channels])
    parts.append(shifted)
  parts.append(x[..., used:])
  return jnp.concatenate(parts, axis=-1)
