"""Encoded image bytes -> uint8 RGB, as torchvision's PIL loader decodes them.

JPEGs decode with libjpeg's accurate integer IDCT, which gives PIL's pixels
exactly (TF's default fast IDCT differs by up to 6/255, 1/255 on average,
measured on scikit-learn's sample photos). Every other format goes through
tf.io.decode_image (PNG, GIF's first frame, BMP, WebP). Grayscale, RGBA,
palette, CMYK and 16-bit images all come out as 8-bit RGB: channels are
replicated or dropped (alpha is discarded, as PIL's convert("RGB") does),
CMYK is converted by libjpeg, 16-bit samples are scaled to 8 bits.

A JPEG is recognised by its bytes, not its file name (ImageNet has a PNG
named .JPEG).
"""

import tensorflow as tf


def _decode_jpeg(encoded: tf.Tensor, ratio: int = 1) -> tf.Tensor:
  return tf.io.decode_jpeg(encoded, channels=3, ratio=ratio,
                           dct_method="INTEGER_ACCURATE")


def _decode_other(encoded: tf.Tensor) -> tf.Tensor:
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
  """A scalar string of image bytes -> uint8 [H, W, 3]."""
  image = tf.cond(tf.io.is_jpeg(encoded), lambda: _decode_jpeg(encoded),
                  lambda: _decode_other(encoded))
  image.set_shape([None, None, 3])
  return image


def decode_at_least(encoded: tf.Tensor, side: int
                    ) -> tuple[tf.Tensor, tf.Tensor]:
  """decode_rgb, but a JPEG whose longer side is over twice `side` is
  decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling (the largest
  that leaves the longer side >= `side`): several times faster for large
  photos, and not PIL's pixels (for images that are reduced anyway).
  -> (uint8 [h, w, 3], int32 [2]: the full-scale (H, W))."""
  def jpeg():
    size = tf.image.extract_jpeg_shape(encoded)[:2]
    longest = tf.reduce_max(size)
    # libjpeg scales to ceil(n / ratio).
    def at(ratio):
      return lambda: _decode_jpeg(encoded, ratio)
    image = tf.case([((longest + r - 1) // r >= side, at(r))
                     for r in (8, 4, 2)], default=at(1))
    return image, size

  def other():
    image = _decode_other(encoded)
    return image, tf.shape(image)[:2]

  image, size = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  image.set_shape([None, None, 3])
  return image, size


def image_size(encoded: tf.Tensor, *, check: bool = False) -> tf.Tensor:
  """int32 [2] (height, width) of the encoded image.

  With `check`, the whole image is decoded, so this raises (an OpError) for
  a file that cannot be decoded: truncated, corrupt, zero bytes, not an
  image. A JPEG is then decoded at 1/8 scale, which still entropy-decodes
  every block (where truncation and corruption show) at half the cost.
  """
  def jpeg():
    size = tf.image.extract_jpeg_shape(encoded)[:2]
    if not check:
      return size
    # Graph optimisation drops an op whose result goes unused, even under a
    # control dependency; min(shape, 0) = 0 makes the size depend on it.
    decoded = _decode_jpeg(encoded, ratio=8)
    return size + tf.minimum(tf.shape(decoded)[:2], 0)

  def other():
    return tf.shape(_decode_other(encoded))[:2]

  return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
