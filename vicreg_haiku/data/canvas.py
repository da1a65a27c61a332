"""The host's half of augment_on=device: decoded images on a canvas, and
each view's crop as Pillow's resize coefficients.

Per example the host decodes the image (decoding.decode_rgb: PIL's pixels)
and puts it in the top-left corner of a square uint8 canvas of a fixed side
(static shapes for the accelerator); per chunk of examples it draws each
view's crop box and flip exactly as the host path does
(augmentations.crop_boxes on the image's own size, from the same keyed
uniforms) and turns them into banded coefficients (pil_taps.py). The
accelerator resizes (device_crops.py), so the host never resamples.

An image with a side longer than the canvas is reduced on the host first
(a JPEG over twice the canvas by libjpeg's DCT scaling while decoding, then
Pillow's antialiased resize to fit) and its boxes scaled to it, rounded to
whole pixels: those views are not Pillow's crop of the original but a crop
of a reduced image (the documented price, BENCHMARKS.md; the canvas comes
from the split's sizes, so by default at most ~5% of the images pay it,
more only in folders of large photos: canvas_side).
"""

import math

import ml_collections
import numpy as np
import tensorflow as tf

from vicreg_haiku.data import augmentation_constants
from vicreg_haiku.data import augmentations
from vicreg_haiku.data import decoding
from vicreg_haiku.data import pil_filters
from vicreg_haiku.data import pil_resize
from vicreg_haiku.data import pil_taps
from vicreg_haiku.data import shards

Recipe = ml_collections.ConfigDict

# The canvas side when the split's image sizes are unknown (a tfds dataset
# of varying sizes, e.g. ImageNet's, mostly 500 px on the longer side).
UNKNOWN_SIZES_SIDE = 512


def canvas_side(config: ml_collections.ConfigDict,
                info: shards.SplitInfo) -> int:
  """config.pretrain.canvas_size, or by the split: its images' shared
  longer side, else the 95th percentile of their longer sides
  (SplitInfo.long_side_p95), else UNKNOWN_SIZES_SIDE; at most
  largest_useful_side (photos of many megapixels would make a canvas the
  accelerator pays for quadratically)."""
  return _side_and_why(config, info)[0]


def _side_and_why(config: ml_collections.ConfigDict,
                  info: shards.SplitInfo) -> tuple[int, str]:
  if config.pretrain.canvas_size:
    return int(config.pretrain.canvas_size), "pretrain.canvas_size"
  if info.image_shape:
    side, why = max(info.image_shape), "the images' size"
  elif info.long_side_p95:
    side, why = info.long_side_p95, "95% of the images fit"
  else:
    side, why = UNKNOWN_SIZES_SIDE, "the images' sizes are unknown"
  cap = largest_useful_side(config)
  if side > cap:
    side, why = cap, f"larger adds nothing at {config.dataset.image_size} px"
  return int(side), why


def describe(config: ml_collections.ConfigDict,
             info: shards.SplitInfo) -> str:
  """The console's line on the canvas canvas_side picks, and why."""
  side, why = _side_and_why(config, info)
  return (f"augment_on=device: images decoded onto a {side} px canvas "
          f"({why}; longer ones are reduced on the host first)")


def largest_useful_side(config: ml_collections.ConfigDict) -> int:
  """UNKNOWN_SIZES_SIDE, or more where the smallest crop of a canvas that
  size would have fewer pixels across than the output: a reduced image
  then still holds every crop's detail at the output size."""
  recipe = config.augmentations[config.pretrain.augmentation]
  size = config.dataset.image_size
  return max(UNKNOWN_SIZES_SIDE,
             math.ceil(size / math.sqrt(recipe.crop_scale[0])))


def on_canvas(image: tf.Tensor, side: int, interpolation: str, *,
              encoded: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """One example (uint8 [H, W, 3] or its encoded bytes) -> (uint8
  [side, side, 3], its (H, W), the (h, w) it has on the canvas: (H, W)
  unless a side was longer than the canvas)."""
  if encoded:
    image, size = decoding.decode_at_least(image, side)
  else:
    size = tf.shape(image)[:2]
  fitted = tf.shape(image)[:2]
  longest = tf.reduce_max(fitted)

  def reduce():
    scaled = tf.cast(fitted, tf.float64) * (side
                                            / tf.cast(longest, tf.float64))
    new = tf.clip_by_value(tf.cast(tf.round(scaled), tf.int32), 1, side)
    resized = pil_resize.resize_pil(image, new[0], new[1], interpolation)
    return tf.cast(resized, tf.uint8)

  image = tf.cond(longest > side, reduce, lambda: image)
  fitted = tf.shape(image)[:2]
  padded = tf.pad(image, [[0, side - fitted[0]], [0, side - fitted[1]],
                          [0, 0]])
  return tf.ensure_shape(padded, [side, side, 3]), size, fitted


def _axis_taps(start, extent, original, fitted, size: int,
               interpolation: str, width: int):
  """NumPy: one axis's pil_taps of every view: start, extent (the box on
  the original image), original, fitted (the image's length, originally
  and on the canvas), each [m].

  Where the image was reduced, its box is scaled to it and resized as
  Pillow's Image.resize(box=...) does, with the box's float32 coordinates
  (as Pillow parses them): the nearest to the original crop a reduced image
  allows.
  """
  m = len(start)
  first = np.zeros((m, size), np.int32)
  fixed = np.zeros((m, size, width), np.int32)
  exact = original == fitted
  first[exact], fixed[exact] = pil_taps.taps(
      start[exact], extent[exact], size, interpolation, width)
  reduced = ~exact
  if reduced.any():
    scale = fitted[reduced] / original[reduced]
    low = (start[reduced] * scale).astype(np.float32).astype(np.float64)
    high = ((start[reduced] + extent[reduced]) * scale).astype(
        np.float32).astype(np.float64)
    first[reduced], fixed[reduced] = pil_taps.taps(
        low, high - low, size, interpolation, width, limit=fitted[reduced])
  return first, fixed


def _taps(top, h, left, w, original, fitted, flips, size: int, side: int,
          interpolation: str):
  """NumPy: each view's rows and columns (_axis_taps), a flipped view's
  columns reversed (a horizontal flip after the resize)."""
  width = pil_taps.num_taps(side, size, interpolation)
  rows = _axis_taps(top, h, original[:, 0], fitted[:, 0], size,
                    interpolation, width)
  cols_first, cols = _axis_taps(left, w, original[:, 1], fitted[:, 1], size,
                                interpolation, width)
  cols_first = np.where(flips[..., None], cols_first[..., ::-1], cols_first)
  cols = np.where(flips[..., None, None], cols[..., ::-1, :], cols)
  return (*rows, cols_first, cols)


def view_geometry(u: tf.Tensor, original: tf.Tensor, fitted: tf.Tensor,
                  recipe: Recipe, size: int, side: int
                  ) -> dict[str, tf.Tensor]:
  """A chunk: u [n, 2, NUM_UNIFORMS], the images' (H, W) and on-canvas
  (h, w), int32 [n, 2] -> what device_crops.two_crops reads beside the
  canvas: "rows_first", "cols_first" int32 [n, 2, S], "rows", "cols" int32
  [n, 2, S, K], "height_first" bool [n, 2]; with a rotating recipe
  "rotation": float32 [n, 2], the uniform its angle is drawn from."""
  n = tf.shape(u)[0]
  flat_u = tf.reshape(u, [-1, augmentation_constants.NUM_UNIFORMS])

  # Each example's sizes once per view: [2n, 2].
  original, fitted = (tf.repeat(x, 2, axis=0) for x in (original, fitted))
  top, left, h, w = augmentations.crop_boxes(
      flat_u, original[:, 0], original[:, 1], recipe.crop_scale,
      recipe.crop_ratio)
  flips = augmentation_constants.take(flat_u, "flip")[:, 0] < recipe.flip_prob
  outputs = tf.numpy_function(
      lambda *args: _taps(*args, size, side, recipe.interpolation),
      [top, h, left, w, original, fitted, flips], [tf.int32] * 4,
      stateful=False)
  views = tf.stack([n, 2])
  taps = pil_taps.num_taps(side, size, recipe.interpolation)
  rows_first, rows, cols_first, cols = (
      tf.ensure_shape(tf.reshape(x, tf.concat([views, shape], 0)),
                      [None, 2, *shape])
      for x, shape in zip(outputs, ([size], [size, taps]) * 2))
  geometry = {
      "rows_first": rows_first, "rows": rows, "cols_first": cols_first,
      "cols": cols,
      "height_first": tf.reshape(pil_filters.height_first(h, w, size, size),
                                 views)}
  if recipe.rotation_degrees:
    geometry["rotation"] = tf.reshape(
        augmentation_constants.take(flat_u, "rotation")[:, 0], views)
  return geometry
