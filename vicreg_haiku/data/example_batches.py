"""Pretraining batches of random content with the real batch's keys, shapes
and dtypes, made in NumPy (no TensorFlow, no data).

What the step benchmark feeds the step on an accelerator image without TF
(benchmarks/train_step.py), and what a plan for a TPU slice compiles the
step against (plan.py, as abstract shapes). tests/test_example_batches.py
holds them to datasets.pretrain_batches' keys, shapes and dtypes.
"""

import ml_collections
import numpy as np

from vicreg_haiku.data import augmentation_constants
from vicreg_haiku.data import device_augmentations
from vicreg_haiku.data import photometric_draws
from vicreg_haiku.data import pil_filters
from vicreg_haiku.data import pil_taps
from vicreg_haiku.utils import view_sizes

# The image a device-path example holds on its canvas: ImageNet's typical
# 500 x 375 photo.
PHOTO_HEIGHT_WIDTH = (375, 500)


def _boxes(rng: np.random.Generator, n: int, height: int, width: int):
  """RandomResizedCrop-like boxes (scale 0.08-1, ratio 3/4-4/3) in an
  image of height x width: (top, left, h, w), each [n]."""
  area = height * width * rng.uniform(0.08, 1.0, n)
  ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), n))
  h = np.clip(np.round(np.sqrt(area / ratio)), 1, height).astype(int)
  w = np.clip(np.round(np.sqrt(area * ratio)), 1, width).astype(int)
  return rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w


def _views(rng: np.random.Generator, recipe: ml_collections.ConfigDict,
           batch: int, count: int, size: int, side: int,
           image: tuple[int, int], local: bool) -> dict[str, np.ndarray]:
  """`count` views per example, of `size`: their crop boxes as Pillow's
  coefficients (pil_taps), photometric parameters (photometric_draws) and
  a rotating recipe's uniform, each [batch, count, ...]."""
  u = photometric_draws.draw_uniforms(rng, (batch, count))
  top, left, h, w = (x.reshape(batch, count)
                     for x in _boxes(rng, count * batch, *image))
  taps = pil_taps.num_taps(side, size, recipe.interpolation)
  rows = pil_taps.taps(top, h, size, recipe.interpolation, taps)
  cols = pil_taps.taps(left, w, size, recipe.interpolation, taps)
  views = dict(photometric_draws.view_params(u, recipe, local=local),
               rows_first=rows[0], rows=rows[1], cols_first=cols[0],
               cols=cols[1],
               height_first=pil_filters.height_first(h, w, size, size))
  if recipe.rotation_degrees:
    views["rotation"] = augmentation_constants.take(
        u.reshape(-1, u.shape[-1]), "rotation")[:, 0].reshape(batch, count)
  return views


def pretrain_batch(config: ml_collections.ConfigDict, batch: int,
                   image: tuple[int, int] = PHOTO_HEIGHT_WIDTH,
                   seed: int = 0) -> dict[str, np.ndarray]:
  """Random inputs of the shapes and dtypes pretrain_batches yields.

  augment_on "host": the two float32 views (and config.pretrain.local_views
  local ones). "device" (augment_on resolved by
  device_augmentations.resolve, so "auto" follows the platform compiled
  for): images of `image` (H, W, clipped to the canvas) on a canvas of
  config.pretrain.canvas_size, each view's crop box as Pillow's
  coefficients (pil_taps) and its photometric parameters (and a rotating
  recipe's uniform), drawn as the tf.data pipeline draws them but in NumPy
  (photometric_draws); the local views' under keys prefixed
  device_augmentations.LOCAL_PREFIX.
  """
  rng = np.random.default_rng(seed)
  size, local = config.dataset.image_size, config.pretrain.local_views
  local_size = view_sizes.local_size(config)
  if device_augmentations.resolve(config.pretrain.augment_on) == "host":
    out = {k: rng.normal(size=(batch, size, size, 3)).astype(np.float32)
           for k in ("view_a", "view_b")}
    if local:
      out["local_views"] = rng.normal(
          size=(batch, local, local_size, local_size, 3)).astype(np.float32)
    return out
  recipe = config.augmentations[config.pretrain.augmentation]
  side = config.pretrain.canvas_size
  image = (min(image[0], side), min(image[1], side))
  canvas = np.zeros((batch, side, side, 3), np.uint8)
  canvas[:, :image[0], :image[1]] = rng.integers(0, 256, (*image, 3))
  out = dict(canvas=canvas, **_views(rng, recipe, batch, 2, size, side, image,
                                     False))
  if local:
    views = _views(rng, recipe, batch, local, local_size, side, image, True)
    out.update({device_augmentations.LOCAL_PREFIX + key: x
                for key, x in views.items()})
  return out
