"""PIL's Image.resize in NumPy, written from Pillow's libImaging/Resample.c.

The reference for the resampling torchvision's transforms run on PIL images:
coefficients in double precision (precompute_coeffs), converted to 22-bit
fixed point (normalize_coeffs_8bpc), then two passes over uint8 data, each
rounding and clipping to 8 bits (ImagingResampleInner): the width first,
unless the height shrinks by more than twice as many pixels as the width
(Pillow 13, python-pillow/Pillow#9549).
"""

import numpy as np

_PRECISION_BITS = 32 - 8 - 2


def _bicubic(x: float) -> float:
  a = -0.5
  x = abs(x)
  if x < 1.0:
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
  if x < 2.0:
    return (((x - 5) * x + 8) * x - 4) * a
  return 0.0


def _bilinear(x: float) -> float:
  x = abs(x)
  return 1.0 - x if x < 1.0 else 0.0


_FILTERS = {"bicubic": (_bicubic, 2.0), "bilinear": (_bilinear, 1.0)}


def _coefficients(in_size: int, out_size: int, interpolation: str
                  ) -> np.ndarray:
  """[out_size, in_size] int64 fixed-point weights."""
  kernel, support = _FILTERS[interpolation]
  scale = in_size / out_size
  filterscale = max(scale, 1.0)
  support *= filterscale
  weights = np.zeros((out_size, in_size), np.int64)
  for xx in range(out_size):
    center = (xx + 0.5) * scale
    xmin = max(int(center - support + 0.5), 0)
    xmax = min(int(center + support + 0.5), in_size)
    k = [kernel((x - center + 0.5) / filterscale) for x in range(xmin, xmax)]
    total = sum(k)
    for x, w in zip(range(xmin, xmax), k):
      w = w / total * (1 << _PRECISION_BITS)
      weights[xx, x] = int(w - 0.5) if w < 0 else int(w + 0.5)
  return weights


def _pass(data: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
  acc = np.tensordot(data.astype(np.int64), weights, axes=([axis], [1]))
  acc = np.moveaxis(acc, -1, axis) + (1 << (_PRECISION_BITS - 1))
  return np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)


def resize(image: np.ndarray, width: int, height: int,
           interpolation: str) -> np.ndarray:
  """uint8 [h, w, 3] -> uint8 [height, width, 3], as PIL's Image.resize."""
  in_height, in_width = image.shape[:2]
  passes = [(1, in_width, width), (0, in_height, height)]
  if height < in_height and in_height - height > 2 * (in_width - width):
    passes.reverse()
  out = image
  for axis, size, new in passes:
    if new != size:
      out = _pass(out, _coefficients(size, new, interpolation), axis)
  return out


def centre_crop_offsets(height: int, width: int, size: int):
  return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def resized_shape(height: int, width: int, shorter: int):
  """torchvision's Resize(shorter) output (height, width)."""
  if width <= height:
    return int(shorter * height / width), shorter
  return shorter, int(shorter * width / height)

