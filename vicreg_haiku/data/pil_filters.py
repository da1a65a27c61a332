"""Pillow's resampling filters and rules, for any array library.

Written with Python's operators and a `where` passed in, so the TensorFlow
resize of the host path (pil_resize.py) and the NumPy coefficients of the
device path (pil_taps.py) share one definition of what Pillow computes
(Resample.c: its filters, their supports, the fixed point, the pass order).
"""

# Pillow's fixed point (PRECISION_BITS = 22): coefficients in units of 2^-22.
PRECISION_BITS = 22
ONE = float(1 << PRECISION_BITS)


def bicubic(d, where):
  """Keys' cubic with a = -0.5, as Pillow (torchvision's PIL path)."""
  a = -0.5
  d = abs(d)
  near = ((a + 2) * d - (a + 3)) * d * d + 1
  far = (((d - 5) * d + 8) * d - 4) * a
  return where(d < 1, near, where(d < 2, far, 0 * d))


def bilinear(d, where):
  """The triangle filter."""
  d = abs(d)
  return where(d < 1, 1 - d, 0 * d)


# name -> (filter, support in input pixels at scale 1).
FILTERS = {"bicubic": (bicubic, 2.0), "bilinear": (bilinear, 1.0)}


def check_interpolation(name: str) -> None:
  if name not in FILTERS:
    raise ValueError(f"Unsupported interpolation {name!r}: "
                     f"{' or '.join(FILTERS)}.")


def height_first(in_height, in_width, height, width):
  """Whether Pillow (>= 13) resizes the height before the width.

  Resample.c (python-pillow/Pillow#9549) runs the vertical pass first when
  the height shrinks by more than twice as many pixels as the width does
  (or the width does not shrink); the order changes the rounding between
  the passes. Works on ints, NumPy arrays and tensors alike.
  """
  return ((height < in_height)
          & (in_height - height > 2 * (in_width - width)))
