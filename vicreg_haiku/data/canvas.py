"""The host's half of augment_on=device: decoded images on a canvas, and
each view's crop as Pillow's resize coefficients.

Per example the host decodes the image (decoding: PIL's pixels); whole
batches are padded onto a square uint8 canvas of a fixed side, each image
in the top-left corner (static shapes for the accelerator). Per batch it
draws each view's crop box and flip exactly as the host path does
(augmentations.crop_boxes on the image's own size, from the same keyed
uniforms) and turns them into banded coefficients (pil_taps.py, gathered
from a table per extent). The accelerator resizes (device_crops.py), so
the host never resamples.

An image with a side longer than the canvas is reduced on the host first
(a JPEG over twice the canvas by libjpeg's DCT scaling while decoding, then
Pillow's antialiased resize to fit), and each box is resized from it as
Pillow's Image.resize(box=...) would, the box scaled: those views are not
Pillow's crop of the original but the nearest a reduced image allows (the
documented price, BENCHMARKS.md; the canvas comes from the split's sizes,
so by default at most ~5% of the images pay it, more only in folders of
large photos: canvas_side).
"""

import functools
import math
from typing import Sequence

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
from vicreg_haiku.utils import view_sizes

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
  size would have fewer pixels across than the output (of the global
  views, or of the local ones): a reduced image then still holds every
  crop's detail at the output size."""
  recipe = config.augmentations[config.pretrain.augmentation]
  views = [(config.dataset.image_size, recipe.crop_scale)]
  if config.pretrain.local_views:
    views.append((view_sizes.local_size(config),
                  config.pretrain.local_crop_scale))
  return max(UNKNOWN_SIZES_SIDE, *(math.ceil(size / math.sqrt(scale[0]))
                                   for size, scale in views))


def fit_canvas(image: tf.Tensor, side: int, interpolation: str, *,
               encoded: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """One example (uint8 [H, W, 3] or its encoded bytes) -> (uint8
  [h, w, 3] with h, w <= side, its (H, W), that (h, w): (H, W) unless a
  side was longer than the canvas). Batched with padding to
  [side, side, 3] (tf.data's padded_batch: one copy), the image in the
  top-left corner."""
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
  return image, size, tf.shape(image)[:2]


@functools.cache
def _crop_table(side: int, size: int, interpolation: str
                ) -> tuple[np.ndarray, np.ndarray]:
  """pil_taps of a crop of every extent 1..side resized to `size`:
  (first [side, size], fixed [side, size, K]), row e - 1 for extent e. A
  crop's coefficients depend on its extent alone (its start only shifts
  them), so the pipeline gathers them (a few MB for any canvas)."""
  extents = np.arange(1, side + 1)
  return pil_taps.taps(np.zeros_like(extents), extents, size, interpolation,
                       pil_taps.num_taps(side, size, interpolation))


def _reduced_taps(start, extent, original, fitted, size: int,
                  interpolation: str, width: int):
  """NumPy, one axis of every view [m]: the box (start, extent) on the
  original image scaled to the image as it lies on the canvas, resized as
  Pillow's Image.resize(box=...) does, the box's coordinates in float32 (as
  Pillow parses them): the nearest to the original crop that a reduced
  image allows. Rows of images that were not reduced are left zero."""
  first = np.zeros((len(start), size), np.int32)
  fixed = np.zeros((len(start), size, width), np.int32)
  reduced = original != fitted
  scale = fitted[reduced] / original[reduced]
  low = (start[reduced] * scale).astype(np.float32).astype(np.float64)
  high = ((start[reduced] + extent[reduced]) * scale).astype(
      np.float32).astype(np.float64)
  first[reduced], fixed[reduced] = pil_taps.taps(
      low, high - low, size, interpolation, width, limit=fitted[reduced])
  return first, fixed


def _axis_taps(start, extent, original, fitted, table, size: int,
               interpolation: str) -> tuple[tf.Tensor, tf.Tensor]:
  """One axis of every view, int32 [m] each -> (first [m, size], fixed
  [m, size, K]): gathered from `table` (_crop_table's, as tensors), or, in
  a batch holding a reduced image, _reduced_taps for its rows."""
  table_first, table_fixed = table
  side = table_first.shape[0]
  row = tf.clip_by_value(extent, 1, side) - 1  # reduced rows: replaced
  first = start[:, None] + tf.gather(table_first, row)
  fixed = tf.gather(table_fixed, row)
  reduced = original != fitted

  def with_reduced():
    box_first, box_fixed = tf.numpy_function(
        lambda *args: _reduced_taps(*args, size, interpolation,
                                    table_fixed.shape[-1]),
        [start, extent, original, fitted], [tf.int32] * 2, stateful=False)
    return (tf.where(reduced[:, None], box_first, first),
            tf.where(reduced[:, None, None], box_fixed, fixed))

  first, fixed = tf.cond(tf.reduce_any(reduced), with_reduced,
                         lambda: (first, fixed))
  return (tf.ensure_shape(first, [None, size]),
          tf.ensure_shape(fixed, [None, size, table_fixed.shape[-1]]))


def view_geometry(u: tf.Tensor, original: tf.Tensor, fitted: tf.Tensor,
                  recipe: Recipe, size: int, side: int,
                  scale: Sequence[float]) -> dict[str, tf.Tensor]:
  """A batch: u [n, V, NUM_UNIFORMS] of V views (the two global ones, or
  the local ones) cropped at `scale` and resized to `size`, the images'
  (H, W) and on-canvas (h, w), int32 [n, 2] -> what device_crops.view_crops
  reads beside the canvas: "rows_first", "cols_first" int32 [n, V, size],
  "rows", "cols" int32 [n, V, size, K], "height_first" bool [n, V]; with a
  rotating recipe "rotation": float32 [n, V], the uniform its angle is
  drawn from. A flipped view's columns come in reverse order (a horizontal
  flip after the resize)."""
  n, views = tf.shape(u)[0], u.shape[1]
  flat_u = tf.reshape(u, [-1, augmentation_constants.NUM_UNIFORMS])
  # Each example's sizes once per view: [Vn, 2].
  original, fitted = (tf.repeat(x, views, axis=0)
                      for x in (original, fitted))
  top, left, h, w = augmentations.crop_boxes(
      flat_u, original[:, 0], original[:, 1], scale, recipe.crop_ratio)
  # One copy of the table in the graph, for rows and columns alike.
  table = tuple(tf.constant(x)
                for x in _crop_table(side, size, recipe.interpolation))
  rows = _axis_taps(top, h, original[:, 0], fitted[:, 0], table, size,
                    recipe.interpolation)
  cols = _axis_taps(left, w, original[:, 1], fitted[:, 1], table, size,
                    recipe.interpolation)
  flips = augmentation_constants.take(flat_u, "flip")[:, 0] < recipe.flip_prob
  cols = tuple(tf.where(tf.reshape(flips, [-1] + [1] * (x.shape.rank - 1)),
                        tf.reverse(x, [1]), x) for x in cols)

  def per_example(x):  # [Vn, ...] -> [n, V, ...]
    return tf.reshape(x, tf.concat([[n, views], tf.shape(x)[1:]], 0))

  geometry = {
      "rows_first": rows[0], "rows": rows[1], "cols_first": cols[0],
      "cols": cols[1], "height_first": pil_filters.height_first(h, w, size,
                                                                size)}
  if recipe.rotation_degrees:
    geometry["rotation"] = augmentation_constants.take(flat_u,
                                                       "rotation")[:, 0]
  return {key: per_example(x) for key, x in geometry.items()}
