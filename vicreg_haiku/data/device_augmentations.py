"""The views made in the training step, in JAX, on the accelerator.

With `config.pretrain.augment_on = "device"` (what "auto" picks on a GPU or
TPU, resolve below) the input pipeline only decodes each image onto a
canvas and draws each view's crop (as Pillow's resize coefficients,
canvas.py), flip and photometric parameters, from the same keyed uniforms
as the host path; the jitted training step turns them into views here:
crop + resize + flip (device_crops.py, Pillow-exact), rotation, then the
photometric half, as DeepMind's BYOL does. An accelerator then needs from
the host CPUs only the decoding, not the per-pixel work, which they cannot
keep up with.

The colour maths is photometric.py's (torchvision's tensor definitions on
floats, clipping to [0, 1] after each op; not the official code's uint8 PIL
arithmetic, see augmentations.py for the measured difference); tests check
both against the same NumPy references and the two paths' views against
each other on the same examples.
"""

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from vicreg_haiku.data import augmentation_constants
from vicreg_haiku.data import device_crops
from vicreg_haiku.utils import compile_target

Params = Mapping[str, jax.Array]

# config.pretrain.augment_on's values; "auto" picks by JAX's backend.
AUGMENT_ON = ("auto", "host", "device")
# A device batch's keys of the local views (multi-crop; the global views'
# without it).
LOCAL_PREFIX = "local_"


def resolve(augment_on: str, backend: str | None = None) -> str:
  """"host" or "device" for config.pretrain.augment_on.

  "auto" is "device" on a GPU or TPU (whose hosts cannot keep up with the
  colour work per pixel) and "host" on a CPU (where XLA's CPU colour ops
  are slower than tf.data's and the step, not the pipeline, is the limit).
  `backend`: the platform being compiled for (compile_target) unless given.
  """
  if augment_on != "auto":
    return augment_on
  backend = backend or compile_target.platform()
  return "host" if backend == "cpu" else "device"


def _clip(x: jax.Array) -> jax.Array:
  return jnp.clip(x, 0.0, 1.0)


def _per_example(x: jax.Array) -> jax.Array:
  """[B] -> [B, 1, 1, 1], to broadcast over images."""
  return x[:, None, None, None]


def grayscale(x: jax.Array) -> jax.Array:
  """[..., 3] -> [..., 1] luma (ITU-R 601-2, as PIL and torchvision)."""
  return jnp.sum(x * jnp.asarray(augmentation_constants.GRAY_WEIGHTS), -1,
                 keepdims=True)


def shift_hue(x: jax.Array, delta: jax.Array) -> jax.Array:
  """H <- (H + delta) mod 1 in HSV, torchvision's _rgb2hsv / _hsv2rgb."""
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  maxc = jnp.maximum(jnp.maximum(r, g), b)
  minc = jnp.minimum(jnp.minimum(r, g), b)
  equal = maxc == minc
  chroma = maxc - minc
  s = chroma / jnp.where(equal, 1.0, maxc)
  divisor = jnp.where(equal, 1.0, chroma)
  rc, gc, bc = ((maxc - c) / divisor for c in (r, g, b))
  h = jnp.where(maxc == r, bc - gc,
                jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
  h = h / 6.0 + 1.0 + delta
  h = h - jnp.floor(h)
  v = maxc
  sector = jnp.floor(h * 6.0)
  f = h * 6.0 - sector
  sector = jnp.where(sector >= 6.0, sector - 6.0, sector)
  p = _clip(v * (1.0 - s))
  q = _clip(v * (1.0 - s * f))
  t = _clip(v * (1.0 - s * (1.0 - f)))

  def pick(*values):
    return jnp.select([sector == k for k in range(5)], values[:5], values[5])

  return _clip(jnp.stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p),
                          pick(p, p, t, v, v, q)], axis=-1))


def _linear_stage(x: jax.Array, op: jax.Array, factors: jax.Array
                  ) -> jax.Array:
  """Brightness (op 0), contrast (1) or saturation (2) per example; any
  other op is the identity. Each is clip(f x + (1 - f) target)."""
  linear = (op >= 0) & (op < 3)
  chosen = jnp.take_along_axis(factors, (jnp.maximum(op, 0) % 3)[:, None],
                               axis=1)[:, 0]
  factor = _per_example(jnp.where(linear, chosen, 1.0))
  gray = grayscale(x)
  mean = jnp.mean(gray, axis=(1, 2, 3), keepdims=True)
  target = jnp.where(_per_example(op == 1), mean,
                     jnp.where(_per_example(op == 2), gray, 0.0))
  return _clip(factor * x + (1.0 - factor) * target)


def color_jitter(x: jax.Array, params: Params,
                 recipe: ml_collections.ConfigDict) -> jax.Array:
  """ColorJitter where params["jitter"], ops in params["order"].

  Hue is applied once per example at its stage, as in augmentations.py:
  the linear stages run with hue as the identity, the state before each
  example's hue stage is kept, hue applied to it, the later stages rerun.
  """
  applied = params["jitter"]
  order = jnp.where(applied[:, None], params["order"], -1)
  factors = params["factors"]
  if recipe.hue <= 0:
    for stage in range(4):
      x = _linear_stage(x, order[:, stage], factors)
    return x
  hue_stage = jnp.argmax(order == 3, axis=1)
  before_hue = x
  for stage in range(4):
    x = _linear_stage(x, order[:, stage], factors)
    if stage < 3:
      before_hue = jnp.where(_per_example(hue_stage == stage + 1), x,
                             before_hue)
  y = shift_hue(before_hue, params["hue"][:, None, None])
  for stage in range(1, 4):
    y = _linear_stage(y, jnp.where(hue_stage < stage, order[:, stage], -1),
                      factors)
  return jnp.where(_per_example(applied), y, x)


def gaussian_blur(x: jax.Array, sigma: jax.Array,
                  kernel_size: int) -> jax.Array:
  """Blur [B, S, S, C] with per-example sigma [B] (0: unchanged).

  torchvision's Gaussian over kernel_size taps, reflect padding; separable
  shifted adds.
  """
  radius = kernel_size // 2
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * jnp.square(taps / jnp.maximum(sigma, 1e-6)[:, None]))
  kernel = kernel / jnp.sum(kernel, axis=1, keepdims=True)
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (radius, radius)
    padded = jnp.pad(x, pad, mode="reflect")
    size = x.shape[axis]
    x = sum(_per_example(kernel[:, t])
            * jax.lax.slice_in_dim(padded, t, t + size, axis=axis)
            for t in range(kernel_size))
  return x


def photometric(x: jax.Array, params: Params,
                recipe: ml_collections.ConfigDict, index: int) -> jax.Array:
  """View `index` [B, S, S, 3] in [0, 1] -> normalised: jitter, grayscale,
  blur, solarize (augmentations.photometric, in JAX)."""
  if recipe.jitter_prob > 0:
    x = color_jitter(x, params, recipe)
  if recipe.grayscale_prob > 0:
    x = jnp.where(_per_example(params["grayscale"]),
                  jnp.broadcast_to(grayscale(x), x.shape), x)
  blur_prob, solarize_prob = augmentation_constants.blur_and_solarize(
      recipe, index)
  if blur_prob > 0:
    size = augmentation_constants.blur_kernel_size(recipe, x.shape[1])
    x = gaussian_blur(x, params["blur_sigma"], size)
  if solarize_prob > 0:
    bright = x >= augmentation_constants.SOLARIZE_THRESHOLD
    x = jnp.where(_per_example(params["solarize"]) & bright, 1.0 - x, x)
  return normalize(x, recipe.mean, recipe.std)


def normalize(x: jax.Array, mean: Sequence[float],
              std: Sequence[float]) -> jax.Array:
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def _bilinear_read(image: jax.Array, y: jax.Array, x: jax.Array
                   ) -> jax.Array:
  """image [H, W, C] at float coordinates y, x [H, W]: bilinear, zero
  outside, with TensorFlow's ImageProjectiveTransformV3 arithmetic."""
  height, width = image.shape[:2]

  def read(row, col):
    inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
    value = image[jnp.clip(row, 0, height - 1).astype(jnp.int32),
                  jnp.clip(col, 0, width - 1).astype(jnp.int32)]
    return jnp.where(inside[..., None], value, 0.0)

  y0, x0 = jnp.floor(y), jnp.floor(x)
  y1, x1 = y0 + 1, x0 + 1
  fx0, fx1 = (x1 - x)[..., None], (x - x0)[..., None]
  top = fx0 * read(y0, x0) + fx1 * read(y0, x1)
  bottom = fx0 * read(y1, x0) + fx1 * read(y1, x1)
  return (y1 - y)[..., None] * top + (y - y0)[..., None] * bottom


def rotate(images: jax.Array, degrees: jax.Array) -> jax.Array:
  """[B, H, W, C] rotated about the centre by degrees [B], bilinear, zero
  fill: augmentations.rotate (TensorFlow's projective transform) in JAX."""
  height, width = images.shape[1:3]
  angle = degrees * (jnp.pi / 180.0)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2
  y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32),
                            indexing="ij")

  def one(image, c, s, dx, dy):
    return _bilinear_read(image, s * cols + c * rows + dy,
                          c * cols - s * rows + dx)

  return jax.vmap(one)(images, cos, sin, x_offset, y_offset)


def _crops(views: Mapping[str, jax.Array],
           recipe: ml_collections.ConfigDict) -> jax.Array:
  """The geometric half of V views: float32 [B, V, S, S, 3] in [0, 1],
  rounded to uint8 levels as the host path's crops
  (augmentations.crop_view_sets)."""
  crops = device_crops.view_crops(views)
  if not recipe.rotation_degrees:
    return crops / 255.0
  size = crops.shape[2]
  degrees = augmentation_constants.between(
      views["rotation"], -recipe.rotation_degrees, recipe.rotation_degrees)
  rotated = rotate(crops.reshape(-1, size, size, 3), degrees.reshape(-1))
  rounded = jnp.floor(jnp.clip(rotated, 0.0, 255.0) + 0.5)
  return rounded.reshape(crops.shape) / 255.0


def _params(views: Mapping[str, jax.Array]) -> Params:
  return {name: value for name, value in views.items()
          if name not in device_crops.GEOMETRY}


def two_views(batch: Mapping[str, jax.Array],
              recipe: ml_collections.ConfigDict
              ) -> tuple[jax.Array, jax.Array]:
  """A device batch (the canvas and each view's resize coefficients, as
  canvas.view_geometry, and the parameters of photometric.view_params, each
  [B, 2, ...]) -> (view a, view b), float32, normalised."""
  views = {name: value for name, value in batch.items()
           if not name.startswith(LOCAL_PREFIX)}
  crops, params = _crops(views, recipe), _params(views)
  view_a, view_b = (photometric(crops[:, v], {
      name: value[:, v] for name, value in params.items()}, recipe, v)
                    for v in range(2))
  return view_a, view_b


def local_views(batch: Mapping[str, jax.Array],
                recipe: ml_collections.ConfigDict) -> jax.Array:
  """A device batch's local views (its "canvas" and the keys prefixed
  LOCAL_PREFIX: their resize coefficients and photometric parameters, each
  [B, L, ...]) -> float32 [B, L, s, s, 3], normalised: the host path's
  "local_views"."""
  views = {name[len(LOCAL_PREFIX):]: value for name, value in batch.items()
           if name.startswith(LOCAL_PREFIX)}
  crops = _crops(dict(views, canvas=batch["canvas"]), recipe)
  # Every local view alike: one batch of B * L, as the host path's.
  flat = {name: value.reshape(-1, *value.shape[2:])
          for name, value in _params(views).items()}
  x = photometric(crops.reshape(-1, *crops.shape[2:]), flat, recipe,
                  augmentation_constants.LOCAL)
  return x.reshape(crops.shape)
