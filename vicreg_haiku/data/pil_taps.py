"""Pillow's resampling coefficients as banded taps, in NumPy (float64).

The device path (augment_on=device) resizes each view's crop on the
accelerator with matrix products (device_crops.py); the host computes what
those products multiply by: for every output pixel of a crop of `extent`
input pixels resized to `out`, the first input pixel it reads and its
coefficients, Pillow's 22-bit fixed-point integers. Pillow's
precompute_coeffs (Resample.c), per output pixel j:

  centre = (j + 0.5) * scale,  scale = extent / out
  support = filter support * max(scale, 1)      (antialiasing)
  taps: inputs int(centre - support + 0.5) ... int(centre + support + 0.5)
        clipped to the crop [0, extent)
  weight of input x: filter((x + 0.5 - centre) / max(scale, 1)),
        normalised to sum 1, rounded half away from zero to units of 2^-22

in float64, as Pillow. The crop is cut first (torchvision's resized_crop
crops, then resizes), so taps never read outside it. NumPy, not TF: the
tf.data pipeline calls it per chunk of examples, and the step benchmark on
an accelerator image without TensorFlow calls it too.
"""

import math

import numpy as np

from vicreg_haiku.data import pil_filters


def num_taps(longest: int, out: int, interpolation: str) -> int:
  """Taps per output pixel that cover a crop of up to `longest` pixels
  resized to `out`: Pillow's ksize, ceil(support) * 2 + 1."""
  _, support = pil_filters.FILTERS[interpolation]
  return int(math.ceil(support * max(longest / out, 1.0))) * 2 + 1


def taps(start: np.ndarray, extent: np.ndarray, out: int,
         interpolation: str, width: int, limit: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
  """Boxes [start, start + extent) (arrays of any shape [...]) resized to
  `out` pixels -> (first int32 [..., out]: the first input each output
  pixel reads; fixed int32 [..., out, width]: Pillow's fixed-point
  coefficients of inputs first .. first + width - 1, zero past the taps).

  limit None: integer boxes cut first, then resized (torchvision's
  resized_crop): taps inside the box. Else Pillow's Image.resize(box=...)
  of an image `limit` pixels long (an array like start): the box may be
  fractional and taps read past it, up to the image's edges.
  `width` >= num_taps(max extent, out, interpolation).
  """
  pil_filters.check_interpolation(interpolation)
  kernel, support = pil_filters.FILTERS[interpolation]
  extent = np.asarray(extent, np.float64)[..., None]  # [..., 1]
  scale = extent / out
  filter_scale = np.maximum(scale, 1.0)
  support = support * filter_scale
  centre = (np.arange(out, dtype=np.float64) + 0.5) * scale  # [..., out]
  if limit is None:  # in the box's coordinates
    origin, end = np.asarray(start, np.int64)[..., None], extent
  else:
    centre = centre + np.asarray(start, np.float64)[..., None]
    origin, end = 0, np.asarray(limit, np.float64)[..., None]
  # C's (int) cast truncates toward zero; below zero both clip to 0.
  low = np.maximum(np.trunc(centre - support + 0.5), 0.0)
  high = np.minimum(np.trunc(centre + support + 0.5), end)
  if np.any((high - low) > width):
    raise ValueError(f"{width} taps do not cover a crop of "
                     f"{int(extent.max())} pixels resized to {out}")
  k = np.arange(width, dtype=np.float64)
  x = low[..., None] + k  # [..., out, width]
  inside = k < (high - low)[..., None]
  weights = np.where(inside, kernel(
      (x - centre[..., None] + 0.5) * (1.0 / filter_scale[..., None]),
      np.where), 0.0)
  total = weights.sum(-1, keepdims=True)
  weights = weights / np.where(total == 0.0, 1.0, total)
  fixed = np.sign(weights) * np.floor(np.abs(weights) * pil_filters.ONE + 0.5)
  first = origin + low.astype(np.int64)
  return first.astype(np.int32), fixed.astype(np.int32)
