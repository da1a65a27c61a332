"""Each view's crop, resize and flip on the accelerator, exact to Pillow.

With augment_on=device the host decodes each image onto a square canvas
(uint8 [C, C, 3], the image in its top-left corner) and computes, for each
view, Pillow's coefficients of its crop box resized to S x S
(pil_taps.py: per output row and column, the first input pixel read and the
fixed-point weights; a flipped view's columns in reverse order). Here, in
the jitted step, the coefficients become [S, C] matrices that are zero
outside the box, and two batched matrix products resize: Pillow's
horizontal then vertical pass, or vertical then horizontal where Pillow
runs that order (pil_filters.height_first; those canvases are transposed,
so one product serves both orders), rounding to uint8 after each pass as
Pillow does.

Exact integer arithmetic on matrix units: a 22-bit coefficient is three
8-bit pieces, k = k2 * 2^16 + k1 * 2^8 + k0 (k0, k1 in [0, 256)), each
exact in bfloat16 as the pixels (0..255) are; each product's sums are
integers below 2^24, exact in the float32 accumulators, and are recombined
in int32, then rounded as Pillow's (sum + 2^21) >> 22 and clipped. So the
views equal Pillow's to the bit, on CPUs, GPUs and TPUs alike.
"""

from typing import Mapping

import jax
import jax.numpy as jnp

from vicreg_haiku.data import pil_filters

# The keys of a device batch that make the views' geometry (view_crops reads
# all but "rotation", present when the recipe rotates).
GEOMETRY = ("canvas", "rows_first", "rows", "cols_first", "cols",
            "height_first", "rotation")


def _matrix(first: jax.Array, fixed: jax.Array, size: int) -> jax.Array:
  """Banded taps (first [..., S], fixed [..., S, K]) -> int32 [..., S, size],
  zero outside each row's taps."""
  offset = jnp.arange(size, dtype=jnp.int32) - first[..., None]
  width = fixed.shape[-1]
  inside = (offset >= 0) & (offset < width)
  taps = jnp.take_along_axis(fixed, jnp.clip(offset, 0, width - 1), axis=-1)
  return jnp.where(inside, taps, 0)


def _pieces(weights: jax.Array) -> list[jax.Array]:
  """int32 -> [k2, k1, k0] in bfloat16, k = k2 2^16 + k1 2^8 + k0, exactly
  (arithmetic shifts floor, so k0 and k1 are in [0, 256) for any sign)."""
  return [(weights >> 16).astype(jnp.bfloat16),
          ((weights >> 8) & 255).astype(jnp.bfloat16),
          (weights & 255).astype(jnp.bfloat16)]


def _resample(x: jax.Array, weights: jax.Array) -> jax.Array:
  """One Pillow pass along axis 2: x [B, A, N, 3] of uint8 values
  (bfloat16), weights int32 [B, S, N] -> [B, A, S, 3] of uint8 values."""
  sums = [jnp.einsum("banc,bsn->basc", x, piece,
                     preferred_element_type=jnp.float32).astype(jnp.int32)
          for piece in _pieces(weights)]
  total = (sums[0] << 16) + (sums[1] << 8) + sums[2]
  half = 1 << (pil_filters.PRECISION_BITS - 1)
  rounded = (total + half) >> pil_filters.PRECISION_BITS
  return jnp.clip(rounded, 0, 255).astype(jnp.bfloat16)


def _swap(x: jax.Array, swap: jax.Array) -> jax.Array:
  """x [B, P, Q, 3] with axes 1 and 2 swapped where swap [B] (P == Q)."""
  return jnp.where(swap[:, None, None, None], jnp.swapaxes(x, 1, 2), x)


def crop_resize(canvas: jax.Array, rows: tuple[jax.Array, jax.Array],
                cols: tuple[jax.Array, jax.Array],
                height_first: jax.Array) -> jax.Array:
  """One view of a batch: canvas uint8 [B, C, C, 3]; rows and cols:
  (first int32 [B, S], fixed int32 [B, S, K]) of the vertical and the
  horizontal resize; height_first bool [B] -> float32 [B, S, S, 3] of uint8
  values, Pillow's crop + resize (+ flip, in cols' order)."""
  size = canvas.shape[1]
  vertical = _matrix(*rows, size)  # [B, S, C]
  horizontal = _matrix(*cols, size)
  hf = height_first[:, None, None]
  x = _swap(canvas.astype(jnp.bfloat16), height_first)
  x = _resample(x, jnp.where(hf, vertical, horizontal))  # [B, C, S, 3]
  x = jnp.swapaxes(x, 1, 2)  # the other axis last
  x = _resample(x, jnp.where(hf, horizontal, vertical))  # [B, S, S, 3]
  # x[b, j, i] is output (row i, column j); transposed back where the
  # canvas was not: both orders end as [B, row, column, 3].
  return _swap(x, ~height_first).astype(jnp.float32)


def view_crops(batch: Mapping[str, jax.Array]) -> jax.Array:
  """A device batch's views before colour: "canvas" uint8 [B, C, C, 3],
  "rows_first"/"cols_first" int32 [B, V, S], "rows"/"cols" int32
  [B, V, S, K], "height_first" bool [B, V] -> float32 [B, V, S, S, 3] of
  uint8 values. Each view is one more pair of [S, C] matrices on the same
  canvas."""
  views = [crop_resize(batch["canvas"],
                       (batch["rows_first"][:, v], batch["rows"][:, v]),
                       (batch["cols_first"][:, v], batch["cols"][:, v]),
                       batch["height_first"][:, v])
           for v in range(batch["rows"].shape[1])]
  return jnp.stack(views, axis=1)
