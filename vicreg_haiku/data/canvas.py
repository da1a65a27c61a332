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
(pil_resize: Pillow's antialiased resize, to fit) and its boxes scaled to
it, rounded to whole pixels: those views are not Pillow's crop of the
original but a crop of a reduced image (the documented price; the canvas
comes from the split's sizes, so by default at most ~5% of the images pay
it: canvas_side).
"""

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
  (SplitInfo.long_side_p95), else UNKNOWN_SIZES_SIDE."""
  shared = max(info.image_shape) if info.image_shape else None
  return int(config.pretrain.canvas_size or shared or info.long_side_p95
             or UNKNOWN_SIZES_SIDE)


def on_canvas(image: tf.Tensor, side: int, interpolation: str, *,
              encoded: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """One example (uint8 [H, W, 3] or its encoded bytes) -> (uint8
  [side, side, 3], its (H, W), the (h, w) it has on the canvas: (H, W)
  unless a side was longer than the canvas)."""
  if encoded:
    image = decoding.decode_rgb(image)
  size = tf.shape(image)[:2]
  longest = tf.reduce_max(size)

  def reduce():
    scaled = tf.cast(size, tf.float64) * (side / tf.cast(longest, tf.float64))
    new = tf.clip_by_value(tf.cast(tf.round(scaled), tf.int32), 1, side)
    resized = pil_resize.resize_pil(image, new[0], new[1], interpolation)
    return tf.cast(resized, tf.uint8)

  image = tf.cond(longest > side, reduce, lambda: image)
  fitted = tf.shape(image)[:2]
  padded = tf.pad(image, [[0, side - fitted[0]], [0, side - fitted[1]],
                          [0, 0]])
  return tf.ensure_shape(padded, [side, side, 3]), size, fitted


def _on_fitted(start, extent, original, fitted):
  """A box along one axis of the original image -> the same box on the
  image as it lies on the canvas (reduced or not), whole pixels, >= 1."""
  ratio = tf.cast(fitted, tf.float64) / tf.cast(original, tf.float64)
  start = tf.cast(tf.round(tf.cast(start, tf.float64) * ratio), tf.int32)
  extent = tf.cast(tf.round(tf.cast(extent, tf.float64) * ratio), tf.int32)
  start = tf.minimum(start, fitted - 1)
  return start, tf.clip_by_value(extent, 1, fitted - start)


def _taps(tops, heights, lefts, widths, flips, size: int, side: int,
          interpolation: str):
  """NumPy: pil_taps of every view's rows and columns, a flipped view's
  columns reversed (a horizontal flip after the resize)."""
  width = pil_taps.num_taps(side, size, interpolation)
  rows = pil_taps.taps(tops, heights, size, interpolation, width)
  cols_first, cols = pil_taps.taps(lefts, widths, size, interpolation, width)
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

  def per_view(x):  # [n, 2] -> [2n], each example's size once per view
    return tf.repeat(x, 2)

  top, left, h, w = augmentations.crop_boxes(
      flat_u, per_view(original[:, 0]), per_view(original[:, 1]),
      recipe.crop_scale, recipe.crop_ratio)
  top, h = _on_fitted(top, h, per_view(original[:, 0]),
                      per_view(fitted[:, 0]))
  left, w = _on_fitted(left, w, per_view(original[:, 1]),
                       per_view(fitted[:, 1]))
  flips = augmentation_constants.take(flat_u, "flip")[:, 0] < recipe.flip_prob
  outputs = tf.numpy_function(
      lambda *args: _taps(*args, size, side, recipe.interpolation),
      [top, h, left, w, flips], [tf.int32] * 4, stateful=False)
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
