"""Two-view augmentations as stateless TensorFlow ops.

Each example's randomness is one vector of uniforms drawn by a stateless op
from its own seed (`draw`); the input pipeline keys that seed by (config.seed,
epoch, example), so a view is a pure function of (image, seed, recipe) and a
resumed run sees the same batches.

A view is made in two halves. The geometric half (crop, resize, flip,
rotation) ends in uint8, as torchvision's PIL transforms do: with
augment_on=host per example in the input pipeline (this module, with
pil_resize.py's resize), with augment_on=device in the training step from
the same boxes (canvas.py draws them with crop_boxes, device_crops.py
resizes). The photometric half (colour jitter, grayscale, blur, solarize,
normalisation) runs on whole batches from explicit per-example parameters:
in one XLA-compiled TF function (photometric.py), or inside the training
step (device_augmentations.py, the same maths in JAX, fed the same
parameters).

Colour ops work on float images in [0, 1] and follow torchvision's tensor
definitions (clipping to [0, 1] after each op), so the recipes' strengths
mean what the VICReg paper and the original notebook meant by them. They are
not the official code's arithmetic, which runs torchvision's transforms on
uint8 PIL images: its jitter blends in 8 bits (rounding after each op) and
shifts hue through PIL's 8-bit HSV, and it blurs with PIL's
ImageFilter.GaussianBlur (three extended box blurs, edge pixels repeated)
where we use an exact Gaussian over a fixed kernel with reflect padding.
Measured on photos (benchmarks/pil_difference.py, 0-255 scale): brightness,
contrast and saturation within 1.1 of PIL's (mean 0.25-0.39, PIL's rounding),
hue within 13 (mean 0.26-0.55), the blur within 28 at edges (mean
0.38-0.48 for sigma 0.5-2).
"""

import math
from typing import NamedTuple, Optional, Sequence

import ml_collections
import tensorflow as tf

from vicreg_haiku.data import augmentation_constants
from vicreg_haiku.data import decoding
from vicreg_haiku.data import photometric
from vicreg_haiku.data import pil_resize

Recipe = ml_collections.ConfigDict


# A view's randomness is one vector of uniforms drawn from its seed (layout:
# augmentation_constants); the batched ops below turn slices of it into
# parameters. Drawing per example keeps the keying exact, applying per batch
# keeps the pipeline fast.
_SLICES = augmentation_constants.UNIFORM_SLICES
NUM_UNIFORMS = augmentation_constants.NUM_UNIFORMS


def draw(seed: tf.Tensor, shape: Sequence[int] = ()) -> tf.Tensor:
  """Uniforms [*shape, NUM_UNIFORMS] in [0, 1) for one example's views."""
  return tf.random.stateless_uniform(list(shape) + [NUM_UNIFORMS], seed)


_take = augmentation_constants.take
_between = augmentation_constants.between


def crop_boxes(u: tf.Tensor, height, width, scale: Sequence[float],
               ratio: Sequence[float]) -> tuple[tf.Tensor, ...]:
  """torchvision's RandomResizedCrop.get_params for a batch: (top, left, h, w).

  Ten candidate boxes per example; the first that fits wins, else the central
  crop with the ratio clamped, exactly as torchvision's loop. `height` and
  `width` (the images') may be Python ints, int32 scalars or [B] tensors.
  """
  height = tf.cast(height, tf.int32)
  width = tf.cast(width, tf.int32)
  # One size for all (scalars) or one per example ([B]): a column against
  # each example's ten candidates.
  column_h, column_w = tf.reshape(height, [-1, 1]), tf.reshape(width, [-1, 1])
  area = tf.cast(column_h * column_w, tf.float32)
  target_area = area * _between(_take(u, "area"), *scale)
  aspect = tf.exp(_between(_take(u, "log_ratio"), math.log(ratio[0]),
                           math.log(ratio[1])))
  w = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
  h = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
  fits = (w > 0) & (w <= column_w) & (h > 0) & (h <= column_h)
  first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
  w = tf.gather(w, first, batch_dims=1)
  h = tf.gather(h, first, batch_dims=1)

  # The fallback in float64, as torchvision's Python arithmetic.
  h64, w64 = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
  in_ratio = w64 / h64
  narrow, wide = in_ratio < ratio[0], in_ratio > ratio[1]
  fallback_h = tf.where(narrow, tf.round(w64 / ratio[0]), h64)
  fallback_w = tf.where(wide, tf.round(h64 * ratio[1]), w64)
  found = tf.reduce_any(fits, axis=1)
  h = tf.where(found, h, tf.cast(fallback_h, tf.int32))
  w = tf.where(found, w, tf.cast(fallback_w, tf.int32))

  def offset(name, room):
    pick = tf.cast(_take(u, name)[:, 0] * tf.cast(room + 1, tf.float32),
                   tf.int32)
    return tf.where(found, tf.minimum(pick, room), room // 2)

  return offset("top", height - h), offset("left", width - w), h, w


def _decoded(image: tf.Tensor, encoded: bool, make):
  """make(height, width, crop) on `image`: uint8 [H, W, 3], or its encoded
  bytes. crop(top, left, h, w) -> uint8 [h, w, 3].

  Encoded images are decoded whole (decoding.decode_rgb: PIL's pixels).
  libjpeg's crop-window decoding would read less, but its chroma upsampling
  at the window's edges differs from decoding then cropping (up to 22/255
  at 0.5% of a 4:2:0 JPEG's pixels), and two views need about the whole
  image anyway.
  """
  if encoded:
    image = decoding.decode_rgb(image)
  shape = tf.shape(image)

  def crop(top, left, h, w):
    return tf.slice(image, tf.stack([top, left, 0]), tf.stack([h, w, 3]))

  return make(shape[0], shape[1], crop)


def _crop_resize(height, width, crop, u: tf.Tensor, size: int,
                 scale: Sequence[float], ratio: Sequence[float],
                 interpolation: str, flip_prob: float) -> tf.Tensor:
  """One view -> float32 [size, size, 3] of uint8 values.

  RandomResizedCrop then RandomHorizontalFlip, as torchvision on PIL images.
  """
  top, left, h, w = (t[0] for t in crop_boxes(u[None], height, width, scale,
                                               ratio))
  view = pil_resize.resize_pil(crop(top, left, h, w), size, size, interpolation)
  return tf.cond(u[_SLICES["flip"]][0] < flip_prob,
                 lambda: tf.reverse(view, [1]), lambda: view)


def crop_view(image: tf.Tensor, u: tf.Tensor, size: int,
              scale: Sequence[float], ratio: Sequence[float],
              interpolation: str, flip_prob: float, *,
              encoded: bool = False) -> tf.Tensor:
  """One example: uint8 [H, W, 3] (or its encoded bytes), u [NUM_UNIFORMS]
  -> float32 [size, size, 3] in [0, 1].

  RandomResizedCrop then RandomHorizontalFlip, rounded to uint8 as PIL's
  transforms are; per example (the input pipeline maps it over examples).
  """
  view = _decoded(image, encoded, lambda height, width, crop: _crop_resize(
      height, width, crop, u, size, scale, ratio, interpolation, flip_prob))
  return view / 255.0


def eval_view(image: tf.Tensor, size: int, interpolation: str,
              shape: Optional[tuple[int, int]], *,
              encoded: bool = False) -> tf.Tensor:
  """The evaluation transform of one example, without randomness: uint8
  [H, W, 3] (or its encoded bytes) -> float32 [size, size, 3] in [0, 1].

  A split whose images share one `shape` (H, W) (digits, CIFAR-10, STL10)
  is resized whole with `interpolation`. Any other gets the official
  evaluation transform (facebookresearch/vicreg evaluate.py: Resize(256),
  CenterCrop(224), both torchvision's, bilinear, on PIL images) scaled to
  `size`: the shorter side resized to int(size * 256 / 224) and the longer
  to int(that * longer / shorter), then the central size x size, its
  offsets rounded as torchvision's.
  """
  if encoded:
    image = decoding.decode_rgb(image)
  if shape is not None:
    image = tf.ensure_shape(image, [*shape, 3])
    return pil_resize.resize_pil(image, size, size, interpolation) / 255.0
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  target = size * 256 // 224
  short, long = tf.minimum(height, width), tf.maximum(height, width)
  scaled = tf.cast(tf.cast(target * long, tf.float64)
                   / tf.cast(short, tf.float64), tf.int32)
  portrait = width <= height  # torchvision's test: the width is the short side
  new_h = tf.where(portrait, scaled, target)
  new_w = tf.where(portrait, target, scaled)
  resized = pil_resize.resize_pil(image, new_h, new_w, "bilinear")

  def centre(extent):
    return tf.cast(tf.round(tf.cast(extent - size, tf.float64) / 2), tf.int32)

  view = tf.slice(resized, tf.stack([centre(new_h), centre(new_w), 0]),
                  [size, size, 3])
  return view / 255.0


def rotate(images: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
  """Rotate [B, H, W, 3] about the centre by degrees [B]; bilinear, zero fill."""
  height, width = images.shape[1], images.shape[2]
  angle = degrees * (math.pi / 180.0)
  cos, sin = tf.cos(angle), tf.sin(angle)
  x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2
  y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2
  zeros = tf.zeros_like(cos)
  transforms = tf.stack([cos, -sin, x_offset, sin, cos, y_offset, zeros, zeros],
                        axis=1)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms,
      output_shape=tf.constant([height, width]), fill_value=0.0,
      interpolation="BILINEAR", fill_mode="CONSTANT")


class ViewSet(NamedTuple):
  """Views of one kind of an example (the two global ones, or the local
  ones): their uniforms u [n, NUM_UNIFORMS], side and crop scale."""
  u: tf.Tensor
  size: int
  scale: Sequence[float]


def crop_view_sets(image: tf.Tensor, view_sets: Sequence[ViewSet],
                   recipe: Recipe, *, encoded: bool = False
                   ) -> list[tf.Tensor]:
  """Per example: uint8 [H, W, 3] (or its encoded bytes), decoded once ->
  per ViewSet uint8 [n, size, size, 3].

  The geometric half of the views (crop, resize, flip, rotation), rounded
  to uint8 as PIL's transforms are: a quarter of the bytes to batch, and to
  send to the accelerator when the photometric half runs there.
  """
  def crop_all(height, width, crop):
    return [tf.stack([_crop_resize(height, width, crop, views.u[v],
                                   views.size, views.scale,
                                   recipe.crop_ratio, recipe.interpolation,
                                   recipe.flip_prob)
                      for v in range(views.u.shape[0])])
            for views in view_sets]

  crops = _decoded(image, encoded, crop_all)
  if recipe.rotation_degrees:
    degrees = recipe.rotation_degrees
    crops = [rotate(views, _between(_take(u, "rotation")[:, 0], -degrees,
                                    degrees))
             for views, (u, _, _) in zip(crops, view_sets)]
  return [tf.cast(pil_resize.round_half_up(views), tf.uint8)
          for views in crops]


def crop_views(image: tf.Tensor, u: tf.Tensor, recipe: Recipe, size: int, *,
               encoded: bool = False) -> tf.Tensor:
  """Per example: uint8 [H, W, 3] (or its encoded bytes), u [2, NUM_UNIFORMS]
  -> uint8 [2, size, size, 3]: crop_view_sets of the two global views."""
  return crop_view_sets(image, [ViewSet(u, size, recipe.crop_scale)], recipe,
                        encoded=encoded)[0]


def two_views(images: tf.Tensor, u: tf.Tensor, recipe: Recipe,
              size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """The pair VICReg compares. u: [B, 2, NUM_UNIFORMS], one row per view.

  The composition the input pipeline runs (crop_views per example, then
  finish_views per batch), on a batch at once.
  """
  crops = tf.map_fn(lambda args: crop_views(*args, recipe, size), (images, u),
                    fn_output_signature=tf.uint8)
  return photometric.finish_views(crops, u, recipe)
