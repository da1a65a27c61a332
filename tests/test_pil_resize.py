"""pil_resize against the installed Pillow (>= 13) and its NumPy reference.

Bit-exact on a grid that includes what RandomResizedCrop meets: upscales
(whose ratios put bicubic's zero at distance 1 inside a tap band), mixed
scales (one axis up, the other down), both of Pillow 13's pass orders and
the tie between them, one-pixel sides, saturated and random pixels; with
static sizes and with the dynamic ones tf.data crops have.
"""

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import folder_fake
import pil_reference

from vicreg_haiku.data import pil_filters
from vicreg_haiku.data import pil_resize

_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}

# (in height, in width, out height, out width).
SHAPES = [
    (24, 24, 56, 56),    # upscale: bicubic zero at a band's first row
    (32, 32, 96, 96),    # a 32 px crop to 96 px: the same
    (20, 30, 80, 90),
    (50, 40, 20, 100),   # height down, width up: height first
    (90, 60, 30, 50),    # both down, height by > 2x the width's pixels
    (80, 70, 40, 50),    # both down, exactly 2x: width first (the tie)
    (60, 90, 40, 30),    # both down, the width more: width first
    (40, 90, 60, 30),    # height up, width down
    (300, 200, 96, 96),  # a large downscale, height first
    (37, 41, 37, 41),    # no resize
    (1, 7, 5, 3),        # one-pixel sides
    (9, 1, 2, 4),
    (64, 64, 64, 32),    # one axis only
    (600, 50, 40, 50),   # a downscale by 15: 61 bicubic taps
]


def _pil(image: np.ndarray, height: int, width: int, interpolation: str):
  return np.asarray(Image.fromarray(image).resize((width, height),
                                                  _FILTERS[interpolation]))


def _images(in_h: int, in_w: int):
  rng = np.random.default_rng(in_h * 1000 + in_w)
  noise = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
  # Saturated edges: bicubic's lobes overshoot past 0 and 255 there.
  checks = (np.indices((in_h, in_w)).sum(0) % 2 * 255).astype(np.uint8)
  saturated = np.repeat(checks[..., None], 3, axis=2)
  yield noise
  yield saturated
  if min(in_h, in_w) >= 4:
    yield folder_fake.photo(rng, in_h, in_w)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("in_h, in_w, height, width", SHAPES)
def test_resize_is_pillows_to_the_bit(in_h, in_w, height, width,
                                      interpolation):
  dynamic = tf.function(
      lambda x: pil_resize.resize_pil(x, height, width, interpolation),
      input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  for image in _images(in_h, in_w):
    expected = _pil(image, height, width, interpolation)
    np.testing.assert_array_equal(
        pil_reference.resize(image, width, height, interpolation), expected)
    out = pil_resize.resize_pil(tf.constant(image), height, width,
                                interpolation)
    assert out.shape == (height, width, 3) and out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), expected)
    np.testing.assert_array_equal(dynamic(tf.constant(image)).numpy(),
                                  expected)


def test_random_shapes_are_pillows_to_the_bit():
  rng = np.random.default_rng(7)
  for n in range(40):
    in_h, in_w, height, width = (int(v) for v in rng.integers(1, 120, 4))
    interpolation = ("bicubic", "bilinear")[n % 2]
    image = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    out = pil_resize.resize_pil(tf.constant(image), height, width,
                                interpolation)
    np.testing.assert_array_equal(
        out.numpy(), _pil(image, height, width, interpolation),
        err_msg=f"{in_h}x{in_w} -> {height}x{width} {interpolation}")


def _reference_order(image, height, width, height_first):
  """PIL's two passes in a given order (pil_reference's coefficients)."""
  # pylint: disable=protected-access
  passes = [(1, image.shape[1], width), (0, image.shape[0], height)]
  out = image
  for axis, size, new in passes[::-1] if height_first else passes:
    weights = pil_reference._coefficients(size, new, "bicubic")
    out = pil_reference._pass(out, weights, axis)
  return out


@pytest.mark.parametrize("shape, first", [
    ((50, 40, 20, 100), True), ((90, 60, 30, 50), True),
    ((80, 70, 40, 50), False), ((60, 90, 40, 30), False),
    ((40, 90, 60, 30), False), ((61, 60, 30, 45), True)])
def test_height_first_is_pillows_rule(shape, first):
  assert bool(pil_filters.height_first(*shape)) is first
  assert bool(pil_filters.height_first(*(tf.constant(v) for v in shape))) is (
      first)
  in_h, in_w, height, width = shape
  image = np.random.default_rng(3).integers(0, 256, (in_h, in_w, 3),
                                            dtype=np.uint8)
  # The order shows in the pixels: Pillow's is the rule's, not the other.
  pil = _pil(image, height, width, "bicubic")
  np.testing.assert_array_equal(
      _reference_order(image, height, width, first), pil)
  assert not np.array_equal(
      _reference_order(image, height, width, not first), pil)
