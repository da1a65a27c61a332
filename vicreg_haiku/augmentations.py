"""Two-view augmentations as stateless TensorFlow ops.

Each example's randomness is one vector of uniforms drawn by a stateless op
from its own seed (`draw`); the input pipeline keys that seed by (config.seed,
epoch, example), so a view is a pure function of (image, seed, recipe) and a
resumed run sees the same batches.

A view is made in two halves. The geometric half (crop, resize, flip,
rotation) runs per example in the input pipeline and ends in uint8, as
torchvision's PIL transforms do. The photometric half (colour jitter,
grayscale, blur, solarize, normalisation) runs on whole batches from
explicit per-example parameters (`photometric_params`): here in one
XLA-compiled TF function, or on the accelerator inside the training step
(device_augmentations.py, the same maths in JAX, fed the same parameters).

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

import functools
import math
from typing import Optional, Sequence

import ml_collections
import tensorflow as tf

from vicreg_haiku import augmentation_constants
from vicreg_haiku import decoding

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


# ------------------------------------------------------- random draws ---
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


def _per_example(x: tf.Tensor) -> tf.Tensor:
  """[B] -> [B, 1, 1, 1], to broadcast over images."""
  return x[:, None, None, None]


# ------------------------------------------------------------ geometry ---


def crop_boxes(u: tf.Tensor, height, width, scale: Sequence[float],
               ratio: Sequence[float]) -> tuple[tf.Tensor, ...]:
  """torchvision's RandomResizedCrop.get_params for a batch: (top, left, h, w).

  Ten candidate boxes per example; the first that fits wins, else the central
  crop with the ratio clamped, exactly as torchvision's loop. `height` and
  `width` (the image's) may be Python ints or int32 tensors.
  """
  height = tf.cast(height, tf.int32)
  width = tf.cast(width, tf.int32)
  area = tf.cast(height * width, tf.float32)
  target_area = area * _between(_take(u, "area"), *scale)
  aspect = tf.exp(_between(_take(u, "log_ratio"), math.log(ratio[0]),
                           math.log(ratio[1])))
  w = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
  h = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
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


def _kernel(name: str):
  """PIL's resampling filters: (function of distance, support)."""
  if name == "bicubic":
    a = -0.5
    def cubic(d):
      d = tf.abs(d)
      near = ((a + 2) * d - (a + 3)) * d * d + 1
      far = (((d - 5) * d + 8) * d - 4) * a
      return tf.where(d < 1, near, tf.where(d < 2, far, 0.0))
    return cubic
  if name == "bilinear":
    return lambda d: tf.maximum(0.0, 1.0 - tf.abs(d))
  raise ValueError(f"Unsupported interpolation {name!r}: bicubic or bilinear.")


def _pil_weights(in_size, out_size, interpolation: str) -> tf.Tensor:
  """[out_size, in_size]: PIL's resampling coefficients along one axis.

  Output pixel j samples the input around centre (j + 0.5) * scale; the
  kernel widens by the downscale factor (antialiasing), and taps outside the
  image are dropped, the rest renormalised, as PIL's precompute_coeffs.
  """
  scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
  centre = (tf.range(out_size, dtype=tf.float32)[:, None] + 0.5) * scale
  x = tf.range(in_size, dtype=tf.float32)[None, :]
  weights = _kernel(interpolation)((x + 0.5 - centre)
                                   / tf.maximum(scale, 1.0))
  return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def _round(x: tf.Tensor) -> tf.Tensor:
  """To uint8 values as PIL's fixed point does: halves round up."""
  return tf.floor(tf.clip_by_value(x, 0.0, 255.0) + 0.5)


# Output pixels per band of a resampling pass (see _resample).
_BAND = 32


def _resample(x: tf.Tensor, out, interpolation: str, *,
              last: bool) -> tf.Tensor:
  """One pass of PIL's resampling: along the last axis of x [..., n] (last)
  or the first of x [n, m] (not last), a product with the coefficients.

  The coefficient matrix is banded (an output pixel reads a few inputs near
  its centre): with a static `out`, bands of _BAND output pixels each
  multiply only the inputs they read (2-3x faster at 224 px than the whole
  matrix).
  """
  n = tf.shape(x)[-1 if last else 0]
  weights = _pil_weights(n, out, interpolation)  # [out, n]
  if isinstance(out, int):
    used = tf.cast(weights != 0, tf.int32)
    first = tf.argmax(used, axis=1, output_type=tf.int32)
    end = n - tf.argmax(tf.reverse(used, [1]), axis=1, output_type=tf.int32)
    bands = [(lo, min(lo + _BAND, out)) for lo in range(0, out, _BAND)]
  else:
    first, end = tf.zeros([out], tf.int32), tf.fill([out], n)
    bands = [(0, out)]
  pieces = []
  for lo, hi in bands:
    a, b = first[lo], end[hi - 1]
    w = weights[lo:hi, a:b]
    pieces.append(tf.matmul(x[..., a:b], w, transpose_b=True) if last
                  else tf.matmul(w, x[a:b]))
  if len(pieces) == 1:
    return pieces[0]
  return tf.concat(pieces, axis=-1 if last else 0)


def resize_pil(image: tf.Tensor, height, width,
               interpolation: str) -> tf.Tensor:
  """uint8 [h, w, 3] -> float32 [height, width, 3] of uint8 values: PIL's
  Image.resize, which torchvision's transforms run on PIL images.

  PIL resizes the width, rounds to uint8, then the height, and rounds. Each
  pass here is a float32 product with the coefficient matrix (_resample):
  within 1/255 of PIL's 22-bit fixed point at ~0.1% of the pixels (bicubic
  crops) to ~3% (bilinear, whose weights often sum to exact halves), and on
  a CPU 2-3x faster than tf.image.resize's ScaleAndTranslate, whose weights
  differ from PIL's (bicubic: up to 5/255 at ~15% of the pixels; measured on
  crops of scikit-learn's sample photos).
  """
  rows = tf.shape(image)[0]
  x = tf.transpose(tf.cast(image, tf.float32), [0, 2, 1])  # [h, 3, w]
  x = _round(_resample(x, width, interpolation, last=True))
  x = tf.reshape(x, tf.stack([rows, 3 * width]))  # each row: 3 channels
  x = _round(_resample(x, height, interpolation, last=False))
  x = tf.transpose(tf.reshape(x, tf.stack([height, 3, width])), [0, 2, 1])
  if isinstance(height, int) and isinstance(width, int):
    x.set_shape([height, width, 3])
  return x


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
  view = resize_pil(crop(top, left, h, w), size, size, interpolation)
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
    return resize_pil(image, size, size, interpolation) / 255.0
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  target = size * 256 // 224
  short, long = tf.minimum(height, width), tf.maximum(height, width)
  scaled = tf.cast(tf.cast(target * long, tf.float64)
                   / tf.cast(short, tf.float64), tf.int32)
  portrait = width <= height  # torchvision's test: the width is the short side
  new_h = tf.where(portrait, scaled, target)
  new_w = tf.where(portrait, target, scaled)
  resized = resize_pil(image, new_h, new_w, "bilinear")

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


# -------------------------------------------------------------- colour ---


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
  if recipe.blur_prob[index] > 0:
    size = augmentation_constants.blur_kernel_size(recipe, x.shape[1])
    x = gaussian_blur(x, params["blur_sigma"], size)
  if recipe.solarize_prob[index] > 0:
    x = tf.where(_per_example(params["solarize"]), solarize(x), x)
  return normalize(x, recipe.mean, recipe.std)


def crop_views(image: tf.Tensor, u: tf.Tensor, recipe: Recipe, size: int, *,
               encoded: bool = False) -> tf.Tensor:
  """Per example: uint8 [H, W, 3] (or its encoded bytes), u [2, NUM_UNIFORMS]
  -> uint8 [2, size, size, 3].

  The geometric half of both views (crop, resize, flip, rotation), rounded
  to uint8 as PIL's transforms are: a quarter of the bytes to batch, and to
  send to the accelerator when the photometric half runs there.
  """
  def both(height, width, crop):
    return tf.stack([_crop_resize(height, width, crop, u[v], size,
                                  recipe.crop_scale, recipe.crop_ratio,
                                  recipe.interpolation, recipe.flip_prob)
                     for v in range(2)])

  views = _decoded(image, encoded, both)
  if recipe.rotation_degrees:
    degrees = recipe.rotation_degrees
    views = rotate(views, _between(_take(u, "rotation")[:, 0], -degrees,
                                   degrees))
  return tf.cast(_round(views), tf.uint8)


def view_params(u: tf.Tensor, recipe: Recipe) -> dict[str, tf.Tensor]:
  """u [B, 2, N] -> photometric_params of both views, each [B, 2, ...]."""
  return augmentation_constants.view_params(u, recipe, _TF_OPS)


def finish_views(crops: tf.Tensor, u: tf.Tensor,
                 recipe: Recipe) -> tuple[tf.Tensor, tf.Tensor]:
  """Batched: uint8 crops [B, 2, S, S, 3], u [B, 2, N] -> (view a, view b).

  Static shapes and only elementwise ops, reductions and shifted slices, so
  it is one XLA-compiled function, which fuses the dozens of per-pixel
  passes of jitter, blur and normalisation into a few loops.
  """
  return _compiled_finish(_recipe_key(recipe))(crops, u)


def _recipe_key(recipe: Recipe) -> tuple:
  return tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                      for k, v in recipe.items()))


@functools.lru_cache(maxsize=None)
def _compiled_finish(key: tuple):
  """One XLA-compiled finisher per recipe, shared by every pipeline: TF
  caches the compiled program per function, so a new pipeline (a resumed
  stream, the eval of another split) reuses it instead of paying ~10 s."""
  recipe = ml_collections.ConfigDict(dict(key))

  def finish(crops, u):
    x = tf.cast(crops, tf.float32) / 255.0
    return tuple(photometric(x[:, v], photometric_params(u[:, v], recipe, v),
                             recipe, v) for v in range(2))

  return tf.function(finish, jit_compile=True, autograph=False)


def two_views(images: tf.Tensor, u: tf.Tensor, recipe: Recipe,
              size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """The pair VICReg compares. u: [B, 2, NUM_UNIFORMS], one row per view.

  The composition the input pipeline runs (crop_views per example, then
  finish_views per batch), on a batch at once.
  """
  crops = tf.map_fn(lambda args: crop_views(*args, recipe, size), (images, u),
                    fn_output_signature=tf.uint8)
  return finish_views(crops, u, recipe)
