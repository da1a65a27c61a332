"""Colour ops vs NumPy references written from torchvision's definitions.

Every photometric op is checked in both implementations: the tf.data one
(augmentations) and the on-device JAX one (device_augmentations).
"""

import colorsys

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from vicreg_haiku.data import augmentations
from vicreg_haiku.data import device_augmentations as dev
from vicreg_haiku.data import photometric
from vicreg_haiku.utils import defaults

B = 6
SIZE = 8


def _images(seed=0):
  return np.random.default_rng(seed).uniform(0, 1, (B, SIZE, SIZE, 3)).astype(
      np.float32)


def _gray(x):
  return x @ np.array([0.299, 0.587, 0.114], np.float32)


def _uniforms(**values):
  """Uniforms where every jitter factor is the identity unless given."""
  u = np.full((B, augmentations.NUM_UNIFORMS), 0.5, np.float32)
  for name, value in values.items():
    u[:, augmentations._SLICES[name]] = value  # pylint: disable=protected-access
  return tf.constant(u)


def _recipe(**overrides):
  recipe = defaults.vicreg_views()
  recipe.update(overrides)
  return recipe


def _to_jax(params):
  return {k: jnp.asarray(v.numpy()) for k, v in params.items()}


def _color_jitter(impl, x, u, recipe):
  params = photometric.photometric_params(u, recipe, 0)
  if impl == "tf":
    return photometric.color_jitter(tf.constant(x), params, recipe).numpy()
  return np.asarray(dev.color_jitter(jnp.asarray(x), _to_jax(params), recipe))


def _jitter(impl, x, factors, order=(0.1, 0.2, 0.3, 0.4), **recipe):
  u = _uniforms(jitter=0.0, factors=factors, order=order)
  return _color_jitter(impl, x, u, _recipe(**recipe))


IMPLS = pytest.mark.parametrize("impl", ["tf", "jax"])


@IMPLS
def test_brightness_matches_torchvision(impl):
  x = _images()
  out = _jitter(impl, x, (1.0, 0.5, 0.5, 0.5), brightness=0.4)  # factor 1.4
  np.testing.assert_allclose(out, np.clip(x * 1.4, 0, 1), atol=1e-6)


@IMPLS
def test_contrast_blends_with_the_grey_mean(impl):
  x = _images()
  out = _jitter(impl, x, (0.5, 0.0, 0.5, 0.5), contrast=0.4)  # factor 0.6
  mean = _gray(x).mean(axis=(1, 2))[:, None, None, None]
  np.testing.assert_allclose(out, np.clip(0.6 * x + 0.4 * mean, 0, 1),
                             atol=1e-6)


@IMPLS
def test_saturation_blends_with_grey(impl):
  x = _images()
  out = _jitter(impl, x, (0.5, 0.5, 1.0, 0.5), saturation=0.5)  # factor 1.5
  expected = np.clip(1.5 * x - 0.5 * _gray(x)[..., None], 0, 1)
  np.testing.assert_allclose(out, expected, atol=1e-6)


@IMPLS
def test_hue_shifts_h_in_hsv(impl):
  x = _images()
  out = _jitter(impl, x, (0.5, 0.5, 0.5, 1.0), hue=0.1)  # delta 0.1
  expected = np.array([colorsys.hsv_to_rgb((h + 0.1) % 1.0, s, v)
                       for h, s, v in (colorsys.rgb_to_hsv(*p)
                                       for p in x.reshape(-1, 3))])
  np.testing.assert_allclose(out, expected.reshape(x.shape), atol=1e-5)


@IMPLS
def test_jitter_runs_the_ops_in_the_drawn_order(impl):
  x = _images()
  # order uniforms rank saturation first, then brightness.
  out = _jitter(impl, x, (1.0, 0.5, 1.0, 0.5), order=(0.2, 0.9, 0.1, 0.5),
                brightness=0.4, saturation=0.5)
  sat = np.clip(1.5 * x - 0.5 * _gray(x)[..., None], 0, 1)
  np.testing.assert_allclose(out, np.clip(1.4 * sat, 0, 1), atol=1e-6)


@IMPLS
def test_jitter_not_applied_is_the_identity(impl):
  x = _images()
  u = _uniforms(jitter=0.99, factors=(1.0, 0.0, 1.0, 1.0))
  np.testing.assert_array_equal(_color_jitter(impl, x, u, _recipe()), x)


def test_grayscale_and_solarize():
  x = _images()
  gray = photometric.grayscale(tf.constant(x)).numpy()
  np.testing.assert_allclose(gray[..., 0], _gray(x), atol=1e-6)
  np.testing.assert_allclose(np.asarray(dev.grayscale(x))[..., 0], _gray(x),
                             atol=1e-6)
  expected = np.where(x >= 128 / 255, 1 - x, x)
  np.testing.assert_array_equal(
      photometric.solarize(tf.constant(x)).numpy(), expected)


def _blur_reference(x, sigma, kernel_size):
  """torchvision's GaussianBlur: reflect pad, 1-D Gaussian along H then W."""
  radius = kernel_size // 2
  taps = np.arange(-radius, radius + 1)
  out = np.empty_like(x)
  for i, s in enumerate(sigma):
    if s == 0:
      out[i] = x[i]
      continue
    k = np.exp(-taps**2 / (2 * s**2))
    k /= k.sum()
    padded = np.pad(x[i], ((radius, radius), (radius, radius), (0, 0)),
                    mode="reflect")
    rows = sum(k[t] * padded[t:t + SIZE] for t in range(kernel_size))
    out[i] = sum(k[t] * rows[:, t:t + SIZE] for t in range(kernel_size))
  return out


@IMPLS
def test_blur_matches_torchvision_reflect_gaussian(impl):
  x = _images()
  sigma = np.array([0.0, 0.0, 0.5, 1.0, 2.0, 3.0], np.float32)
  if impl == "tf":
    out = photometric.gaussian_blur(tf.constant(x), tf.constant(sigma),
                                    9).numpy()
  else:
    out = np.asarray(dev.gaussian_blur(x, sigma, 9))
  np.testing.assert_allclose(out, _blur_reference(x, sigma, 9), atol=1e-5)
  np.testing.assert_array_equal(out[:2], x[:2])


@pytest.mark.parametrize("name", ["vicreg", "seed"])
def test_device_photometric_equals_the_tf_data_one(name):
  """The same crops and parameters give the same views on both paths."""
  recipe = getattr(defaults, f"{name}_views")()
  crops = tf.constant((np.random.default_rng(1).uniform(
      0, 1, (64, 2, 16, 16, 3)) * 255).astype(np.uint8))
  u = augmentations.draw(tf.constant([5, 6]), [64, 2])
  host = photometric.finish_views(crops, u, recipe)
  params = _to_jax(photometric.view_params(u, recipe))
  x = jnp.asarray(crops.numpy()) / 255.0
  device = [dev.photometric(x[:, v], {k: p[:, v] for k, p in params.items()},
                            recipe, v) for v in range(2)]
  for h, d in zip(host, device):
    np.testing.assert_allclose(np.asarray(d), h.numpy(), atol=2e-5)


def test_full_crop_resize_is_identity_and_flip_mirrors():
  images = (_images() * 255).astype(np.uint8)

  def crops(flip):
    u = _uniforms(area=1.0, log_ratio=0.5, flip=flip)
    return np.stack([
        augmentations.crop_view(tf.constant(image), u[i], SIZE, (1.0, 1.0),
                                (1.0, 1.0), "bicubic", 0.5).numpy()
        for i, image in enumerate(images)
    ])

  np.testing.assert_allclose(crops(0.9), images / 255, atol=1e-6)
  np.testing.assert_allclose(crops(0.1), images[:, :, ::-1] / 255, atol=1e-6)


def test_crop_boxes_fit_the_image():
  u = tf.random.stateless_uniform([256, augmentations.NUM_UNIFORMS], [1, 2])
  top, left, h, w = (t.numpy() for t in augmentations.crop_boxes(
      u, 20, 30, (0.08, 1.0), (3 / 4, 4 / 3)))
  assert (top >= 0).all() and (left >= 0).all() and (h > 0).all()
  assert (top + h <= 20).all() and (left + w <= 30).all()
  area = h * w / 600
  assert area.min() > 0.05 and area.max() <= 1.0


@pytest.mark.parametrize("name", ["vicreg", "seed"])
def test_views_shapes_ranges_and_determinism(name):
  recipe = getattr(defaults, f"{name}_views")()
  recipe.rotation_degrees = 10.0
  images = tf.constant((_images() * 255).astype(np.uint8))
  u = augmentations.draw(tf.constant([3, 4]), [B, 2])
  a, b = augmentations.two_views(images, u, recipe, 12)
  a2, _ = augmentations.two_views(images, u, recipe, 12)
  assert a.shape == (B, 12, 12, 3) and a.dtype == tf.float32
  np.testing.assert_array_equal(a.numpy(), a2.numpy())
  low = (0 - np.array(recipe.mean)) / np.array(recipe.std)
  high = (1 - np.array(recipe.mean)) / np.array(recipe.std)
  assert (a.numpy() >= low - 1e-5).all() and (a.numpy() <= high + 1e-5).all()
  assert not np.allclose(a.numpy(), b.numpy())
