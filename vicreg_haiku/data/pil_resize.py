"""Pillow's resize in TensorFlow ops: its filters, coefficients and rounding."""

import tensorflow as tf

from vicreg_haiku.data import pil_filters


# PIL's fixed point: coefficients in units of 2^-22 (PRECISION_BITS), split
# into a high and a low part of 11 bits each (see _resample).
_ONE = pil_filters.ONE
_HALF = float(1 << 11)


def _pil_weights(in_size, out_size, interpolation: str) -> tf.Tensor:
  """[out_size, in_size] float64: PIL's resampling coefficients along one
  axis, exactly its 22-bit fixed-point integers (units of 2^-22).

  Output pixel j samples the input around centre (j + 0.5) * scale; the
  kernel widens by the downscale factor (antialiasing), and taps outside the
  image are dropped, the rest renormalised, as PIL's precompute_coeffs (in
  float64, as PIL); then rounded half away from zero to multiples of 2^-22
  as normalize_coeffs_8bpc.
  """
  scale = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
  centre = (tf.range(out_size, dtype=tf.float64)[:, None] + 0.5) * scale
  x = tf.range(in_size, dtype=tf.float64)[None, :]
  # Times the reciprocal, as PIL (inv_filterscale), for its exact doubles.
  kernel, _ = pil_filters.FILTERS[interpolation]
  weights = kernel((x + 0.5 - centre) * (1.0 / tf.maximum(scale, 1.0)),
                   tf.where)
  weights /= tf.reduce_sum(weights, axis=1, keepdims=True)
  fixed = tf.sign(weights) * tf.floor(tf.abs(weights) * _ONE + 0.5)
  return fixed


def _tap_bounds(in_size: tf.Tensor, out_size: int, interpolation: str):
  """[out_size] first and end input of each output pixel's taps: PIL's
  precompute_coeffs bounds, (int)(centre -+ support + 0.5) clipped to the
  image.

  From the support, not from the nonzero weights: bicubic's kernel is
  exactly zero at distance 1, so a tap inside the support can weigh 0 for
  one output pixel and not for its neighbour. One more tap either side
  covers float32's rounding of the centre (the weights there are 0).
  """
  _, support = pil_filters.FILTERS[interpolation]
  scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
  support *= tf.maximum(scale, 1.0)
  centre = (tf.range(out_size, dtype=tf.float32) + 0.5) * scale
  first = tf.cast(tf.floor(centre - support + 0.5), tf.int32) - 1
  end = tf.cast(tf.floor(centre + support + 0.5), tf.int32) + 1
  return tf.maximum(first, 0), tf.minimum(end, in_size)


def round_half_up(x: tf.Tensor) -> tf.Tensor:
  """To uint8 values as PIL's fixed point does: halves round up."""
  return tf.floor(tf.clip_by_value(x, 0.0, 255.0) + 0.5)


# Output pixels per band of a resampling pass (see _resample).
_BAND = 32


def _resample(x: tf.Tensor, out, interpolation: str, *,
              last: bool) -> tf.Tensor:
  """One pass of PIL's resampling: along the last axis of x [..., n] (last)
  or the first of x [n, m] (not last) of uint8 values, PIL's fixed-point
  sums, rounded (half up) and clipped to uint8 values as its clip8.

  PIL sums 8-bit pixels times 22-bit integer coefficients exactly; float32
  cannot hold those products, so each coefficient k = high * 2^11 + low
  (|high| < 2^12, |low| <= 2^10) and the two products are summed apart:
  both stay integers below 2^24, exact in float32 whatever the order of
  the sums (up to 64 taps, a downscale by 16 in bicubic, by 32 in
  bilinear), and the rounding is recombined exactly. One float32 matmul
  with both halves stacked; float64 gave the same pixels 2x slower on a
  CPU, a float32 sum of the whole coefficients missed halves (a level at
  ~3% of bilinear pixels, 2 where bicubic's lobes amplify a first-pass
  miss).

  The coefficient matrix is banded (an output pixel reads a few inputs near
  its centre): with a static `out`, bands of _BAND output pixels each
  multiply only the inputs they read (2-3x faster at 224 px than the whole
  matrix).
  """
  n = tf.shape(x)[-1 if last else 0]
  fixed = _pil_weights(n, out, interpolation)  # [out, n]
  high = tf.round(fixed / _HALF)
  low = tf.cast(fixed - high * _HALF, tf.float32)
  high = tf.cast(high, tf.float32)
  if isinstance(out, int):
    first, end = _tap_bounds(n, out, interpolation)
    bands = [(lo, min(lo + _BAND, out)) for lo in range(0, out, _BAND)]
  else:
    first, end = tf.zeros([out], tf.int32), tf.fill([out], n)
    bands = [(0, out)]
  sums = []  # per band: [..., 2 * pixels] (last) or [2 * pixels, m]
  for lo, hi in bands:
    a, b = first[lo], end[hi - 1]
    w = tf.concat([high[lo:hi, a:b], low[lo:hi, a:b]], axis=0)
    sums.append(tf.split(tf.matmul(x[..., a:b], w, transpose_b=True) if last
                         else tf.matmul(w, x[a:b]), 2, axis=-1 if last else 0))
  high_sum, low_sum = (
      tf.concat(part, axis=-1 if last else 0) if len(part) > 1 else part[0]
      for part in zip(*sums))
  # floor((high_sum * 2^11 + low_sum + 2^21) / 2^22), every term exact.
  carry = tf.floor(high_sum / _HALF)
  rest = (high_sum - carry * _HALF) * _HALF + low_sum + _ONE / 2
  return tf.clip_by_value(carry + tf.floor(rest / _ONE), 0.0, 255.0)


def _width_pass(x: tf.Tensor, width, interpolation: str) -> tf.Tensor:
  """[h, w, 3] -> [h, width, 3], rounded to uint8 values."""
  x = tf.transpose(x, [0, 2, 1])  # [h, 3, w]
  x = _resample(x, width, interpolation, last=True)
  return tf.transpose(x, [0, 2, 1])


def _height_pass(x: tf.Tensor, height, interpolation: str) -> tf.Tensor:
  """[h, w, 3] -> [height, w, 3], rounded to uint8 values."""
  shape = tf.shape(x)
  x = tf.reshape(x, tf.stack([shape[0], 3 * shape[1]]))  # a row: w pixels
  x = _resample(x, height, interpolation, last=False)
  return tf.reshape(x, tf.stack([height, shape[1], 3]))


def resize_pil(image: tf.Tensor, height, width,
               interpolation: str) -> tf.Tensor:
  """uint8 [h, w, 3] -> float32 [height, width, 3] of uint8 values: PIL's
  Image.resize, which torchvision's transforms run on PIL images.

  PIL resizes along one axis, rounds to uint8, then along the other, and
  rounds: the width first unless height_first. Each pass sums PIL's
  fixed-point products exactly (_resample), so the result is PIL's to the
  bit; tf.image.resize's ScaleAndTranslate is slower on a CPU and its
  weights differ from PIL's (bicubic: up to 5/255 at ~15% of the pixels).
  """
  pil_filters.check_interpolation(interpolation)
  x = tf.cast(image, tf.float32)
  shape = tf.shape(image)

  def width_then_height():
    return _height_pass(_width_pass(x, width, interpolation), height,
                        interpolation)

  def height_then_width():
    return _width_pass(_height_pass(x, height, interpolation), width,
                       interpolation)

  order = pil_filters.height_first(shape[0], shape[1], height, width)
  static = tf.get_static_value(order)
  if static is None:
    x = tf.cond(order, height_then_width, width_then_height)
  else:
    x = height_then_width() if static else width_then_height()
  x = tf.cast(x, tf.float32)
  if isinstance(height, int) and isinstance(width, int):
    x.set_shape([height, width, 3])
  return x
