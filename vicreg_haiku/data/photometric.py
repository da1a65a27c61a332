"""The photometric half of a view in TensorFlow ops (augment_on=host): colour
jitter, grayscale, blur, solarize, normalisation, from explicit per-example
parameters, batched in one XLA-compiled function."""

import functools
from typing import Sequence

import ml_collections
import tensorflow as tf

from vicreg_haiku.data import augmentation_constants

Recipe = ml_collections.ConfigDict


def _clip(image: tf.Tensor) -> tf.Tensor:
  return tf.clip_by_value(image, 0.0, 1.0)


def grayscale(image: tf.Tensor) -> tf.Tensor:
  """[..., 3] -> [..., 1] luma."""
  weights = tf.constant(augmentation_constants.GRAY_WEIGHTS)
  return tf.reduce_sum(image * weights, -1, keepdims=True)


def solarize(image: tf.Tensor,
             threshold: float = augmentation_constants.SOLARIZE_THRESHOLD):
  return tf.where(image >= threshold, 1.0 - image, image)


def _per_example(x: tf.Tensor) -> tf.Tensor:
  """[B] -> [B, 1, 1, 1], to broadcast over images."""
  return x[:, None, None, None]


def _shift_hue(image: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
  """H <- (H + delta) mod 1 in HSV (torchvision's adjust_hue); delta
  broadcasts.

  Elementwise math after torchvision's _rgb2hsv / _hsv2rgb, so that XLA
  fuses it with its neighbours instead of calling the RGBToHSV / HSVToRGB
  kernels.
  """
  r, g, b = tf.unstack(image, axis=-1)
  maxc = tf.maximum(tf.maximum(r, g), b)
  minc = tf.minimum(tf.minimum(r, g), b)
  equal = maxc == minc
  chroma = maxc - minc
  s = chroma / tf.where(equal, 1.0, maxc)
  divisor = tf.where(equal, 1.0, chroma)
  rc, gc, bc = ((maxc - c) / divisor for c in (r, g, b))
  h = tf.where(maxc == r, bc - gc,
               tf.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
  # h / 6 + 1 + delta lies in (0, 2.2): x - floor(x) is the mod 1, and
  # vectorises where floormod (fmod) does not.
  h = h / 6.0 + 1.0 + delta[..., 0]
  h = h - tf.floor(h)
  v = maxc
  sector = tf.floor(h * 6.0)
  f = h * 6.0 - sector
  sector = tf.where(sector >= 6.0, sector - 6.0, sector)
  p = _clip(v * (1.0 - s))
  q = _clip(v * (1.0 - s * f))
  t = _clip(v * (1.0 - s * (1.0 - f)))

  def pick(*values):
    out = values[5]
    for k in range(4, -1, -1):
      out = tf.where(sector == k, values[k], out)
    return out

  return _clip(tf.stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p),
                         pick(p, p, t, v, v, q)], axis=-1))


# TF's ops for augmentation_constants.photometric_params.
_TF_OPS = augmentation_constants.ArrayOps(
    stack=tf.stack, argsort=lambda x: tf.argsort(x, axis=1),
    where=tf.where)


def photometric_params(u: tf.Tensor, recipe: Recipe,
                       index: int) -> dict[str, tf.Tensor]:
  """Uniforms [B, N] -> view `index`'s photometric parameters per example
  (augmentation_constants.photometric_params)."""
  return augmentation_constants.photometric_params(u, recipe, index, _TF_OPS)


def color_jitter(images: tf.Tensor, params: dict[str, tf.Tensor],
                 recipe: Recipe) -> tf.Tensor:
  """RandomApply(ColorJitter): where params["jitter"], the four ops in
  params["order"].

  Brightness, contrast and saturation are all clip(f * x + (1 - f) * target)
  with target 0, the grey mean or the grey image, so each of the four stages
  applies every example's op in one pass (f = 1 for the others: exact). Hue
  runs once per example, at that example's stage (see below).
  """
  applied = params["jitter"]
  factors = params["factors"]
  order = tf.where(applied[:, None], params["order"], -1)

  def linear(x, op):
    """Stage op (0, 1, 2; anything else: identity) for every example."""
    linear = (op >= 0) & (op < 3)
    factor = tf.where(linear, tf.gather(factors, tf.maximum(op, 0) % 3,
                                        batch_dims=1), 1.0)
    gray = grayscale(x)
    mean = tf.reduce_mean(gray, axis=(1, 2, 3), keepdims=True)
    target = tf.where(_per_example(op == 1), mean,
                      tf.where(_per_example(op == 2), gray, 0.0))
    factor = _per_example(factor)
    return _clip(factor * x + (1.0 - factor) * target)

  if recipe.hue <= 0:
    x = images
    for stage in range(4):
      x = linear(x, order[:, stage])
    return x
  # Hue runs once per example, not once per stage: the linear stages run
  # with hue as the identity, the state before each example's hue stage is
  # picked, hue applied to it, and the stages after it run on that.
  hue_stage = tf.argmax(tf.cast(order == 3, tf.int32), axis=1,
                        output_type=tf.int32)
  x = images
  before_hue = images
  for stage in range(4):
    x = linear(x, order[:, stage])
    if stage < 3:
      before_hue = tf.where(_per_example(hue_stage == stage + 1), x,
                            before_hue)
  y = _shift_hue(before_hue, _per_example(params["hue"]))
  for stage in range(1, 4):
    y = linear(y, tf.where(hue_stage < stage, order[:, stage], -1))
  return tf.where(_per_example(applied), y, x)


def blur_kernel(sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
  """[B, kernel_size]: torchvision's 1-D Gaussian, exp(-x^2 / 2 sigma^2)
  over kernel_size taps, normalised; sigma = 0 gives the identity. (The
  official recipe's PIL blur approximates a Gaussian with box blurs: see the
  module docstring for how far apart they are.)"""
  radius = kernel_size // 2
  taps = tf.range(-radius, radius + 1, dtype=tf.float32)
  kernel = tf.exp(-0.5 * tf.square(taps / tf.maximum(sigma, 1e-6)[:, None]))
  return kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)


def _blur_axis(images: tf.Tensor, kernel: tf.Tensor, axis: int) -> tf.Tensor:
  """Reflect-pad along axis (1 or 2) and sum the shifted, weighted copies."""
  taps = kernel.shape[1]
  radius, size = taps // 2, images.shape[axis]
  paddings = [[0, 0]] * 4
  paddings[axis] = [radius, radius]
  padded = tf.pad(images, paddings, mode="REFLECT")
  out = 0.0
  for t in range(taps):
    begin = [0, 0, 0, 0]
    begin[axis] = t
    shape = [-1, -1, -1, -1]
    shape[axis] = size
    out += _per_example(kernel[:, t]) * tf.slice(padded, begin, shape)
  return out


def gaussian_blur(images: tf.Tensor, sigma: tf.Tensor,
                  kernel_size: int) -> tf.Tensor:
  """Blur [B, S, S, C] with per-example sigma [B] (0: unchanged).

  Separable: reflect padding (torchvision's) and kernel_size shifted adds
  per axis, which XLA fuses; O(kernel_size) per pixel, not O(S).
  """
  kernel = blur_kernel(sigma, kernel_size)
  return _blur_axis(_blur_axis(images, kernel, 1), kernel, 2)


def normalize(image: tf.Tensor, mean: Sequence[float],
              std: Sequence[float]) -> tf.Tensor:
  return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def photometric(x: tf.Tensor, params: dict[str, tf.Tensor], recipe: Recipe,
                index: int) -> tf.Tensor:
  """Jitter, grayscale, blur, solarize, normalise view `index` [B, S, S, 3]."""
  if recipe.jitter_prob > 0:
    x = color_jitter(x, params, recipe)
  if recipe.grayscale_prob > 0:
    x = tf.where(_per_example(params["grayscale"]),
                 tf.tile(grayscale(x), [1, 1, 1, 3]), x)
  blur_prob, solarize_prob = augmentation_constants.blur_and_solarize(
      recipe, index)
  if blur_prob > 0:
    size = augmentation_constants.blur_kernel_size(recipe, x.shape[1])
    x = gaussian_blur(x, params["blur_sigma"], size)
  if solarize_prob > 0:
    x = tf.where(_per_example(params["solarize"]), solarize(x), x)
  return normalize(x, recipe.mean, recipe.std)


def view_params(u: tf.Tensor, recipe: Recipe, *,
                local: bool = False) -> dict[str, tf.Tensor]:
  """u [B, V, N] -> photometric_params of every view, each [B, V, ...]: the
  global views' (V = 2), or with `local` the local views'."""
  return augmentation_constants.view_params(u, recipe, _TF_OPS, local=local)


def finish_views(crops: tf.Tensor, u: tf.Tensor,
                 recipe: Recipe) -> tuple[tf.Tensor, tf.Tensor]:
  """Batched: uint8 crops [B, 2, S, S, 3], u [B, 2, N] -> (view a, view b).

  Static shapes and only elementwise ops, reductions and shifted slices, so
  it is one XLA-compiled function, which fuses the dozens of per-pixel
  passes of jitter, blur and normalisation into a few loops.
  """
  return _compiled_finish(_recipe_key(recipe), False)(crops, u)


def finish_local_views(crops: tf.Tensor, u: tf.Tensor,
                       recipe: Recipe) -> tf.Tensor:
  """Batched: uint8 local crops [B, L, s, s, 3], u [B, L, N] -> the local
  views, float32 [B, L, s, s, 3] (as finish_views, one compiled function)."""
  return _compiled_finish(_recipe_key(recipe), True)(crops, u)


def _recipe_key(recipe: Recipe) -> tuple:
  return tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                      for k, v in recipe.items()))


def _finish(x: tf.Tensor, u: tf.Tensor, recipe: Recipe,
            index: int) -> tf.Tensor:
  """Crops [n, S, S, 3] in [0, 1], u [n, N] of views `index` -> views."""
  return photometric(x, photometric_params(u, recipe, index), recipe, index)


def _unit(crops: tf.Tensor) -> tf.Tensor:
  return tf.cast(crops, tf.float32) / 255.0


@functools.lru_cache(maxsize=None)
def _compiled_finish(key: tuple, local: bool):
  """One XLA-compiled finisher per recipe (of the global views, or of the
  local ones), shared by every pipeline: TF caches the compiled program
  per function, so a new pipeline (a resumed stream, the eval of another
  split) reuses it instead of paying ~10 s."""
  recipe = ml_collections.ConfigDict(dict(key))

  def finish(crops, u):
    # Scaled whole, then sliced, as before local views: slices scaled one
    # by one fuse otherwise in XLA and come out a last bit apart.
    x = _unit(crops)
    return tuple(_finish(x[:, v], u[:, v], recipe, v) for v in range(2))

  def finish_local(crops, u):
    # Every local view alike: one batch of B * L.
    shape = crops.shape
    views = _finish(_unit(tf.reshape(crops, [-1, *shape[2:]])),
                    tf.reshape(u, [-1, u.shape[-1]]), recipe,
                    augmentation_constants.LOCAL)
    return tf.reshape(views, shape)

  return tf.function(finish_local if local else finish, jit_compile=True,
                     autograph=False)
