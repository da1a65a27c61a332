"""Colour ops vs NumPy references written from torchvision's definitions."""

import colorsys
import os

import numpy as np
import pytest
import tensorflow as tf

from vicreg_haiku import augmentations as aug
from vicreg_haiku import defaults

B = 6
SIZE = 8


def _images(seed=0):
  return np.random.default_rng(seed).uniform(0, 1, (B, SIZE, SIZE, 3)).astype(
      np.float32)


def _gray(x):
  return x @ np.array([0.299, 0.587, 0.114], np.float32)


def _uniforms(**values):
  """Uniforms where every jitter factor is the identity unless given."""
  u = np.full((B, aug.NUM_UNIFORMS), 0.5, np.float32)
  for name, value in values.items():
    u[:, aug._SLICES[name]] = value  # pylint: disable=protected-access
  return tf.constant(u)


def _recipe(**overrides):
  recipe = defaults.vicreg_views()
  recipe.update(overrides)
  return recipe


def _jitter(x, factors, order=(0.1, 0.2, 0.3, 0.4), **recipe):
  u = _uniforms(jitter=0.0, factors=factors, order=order)
  return aug.color_jitter(tf.constant(x), u, _recipe(**recipe)).numpy()


def test_brightness_matches_torchvision():
  x = _images()
  out = _jitter(x, (1.0, 0.5, 0.5, 0.5), brightness=0.4)  # factor 1.4
  np.testing.assert_allclose(out, np.clip(x * 1.4, 0, 1), atol=1e-6)


def test_contrast_blends_with_the_grey_mean():
  x = _images()
  out = _jitter(x, (0.5, 0.0, 0.5, 0.5), contrast=0.4)  # factor 0.6
  mean = _gray(x).mean(axis=(1, 2))[:, None, None, None]
  np.testing.assert_allclose(out, np.clip(0.6 * x + 0.4 * mean, 0, 1),
                             atol=1e-6)


def test_saturation_blends_with_grey():
  x = _images()
  out = _jitter(x, (0.5, 0.5, 1.0, 0.5), saturation=0.5)  # factor 1.5
  expected = np.clip(1.5 * x - 0.5 * _gray(x)[..., None], 0, 1)
  np.testing.assert_allclose(out, expected, atol=1e-6)


def test_hue_shifts_h_in_hsv():
  x = _images()
  out = _jitter(x, (0.5, 0.5, 0.5, 1.0), hue=0.1)  # delta 0.1
  expected = np.array([colorsys.hsv_to_rgb((h + 0.1) % 1.0, s, v)
                       for h, s, v in (colorsys.rgb_to_hsv(*p)
                                       for p in x.reshape(-1, 3))])
  np.testing.assert_allclose(out, expected.reshape(x.shape), atol=1e-5)


def test_jitter_runs_the_ops_in_the_drawn_order():
  x = _images()
  # order uniforms rank saturation first, then brightness.
  out = _jitter(x, (1.0, 0.5, 1.0, 0.5), order=(0.2, 0.9, 0.1, 0.5),
                brightness=0.4, saturation=0.5)
  sat = np.clip(1.5 * x - 0.5 * _gray(x)[..., None], 0, 1)
  np.testing.assert_allclose(out, np.clip(1.4 * sat, 0, 1), atol=1e-6)


def test_jitter_not_applied_is_the_identity():
  x = _images()
  u = _uniforms(jitter=0.99, factors=(1.0, 0.0, 1.0, 1.0))
  out = aug.color_jitter(tf.constant(x), u, _recipe())
  np.testing.assert_array_equal(out.numpy(), x)


def test_grayscale_and_solarize():
  x = _images()
  np.testing.assert_allclose(aug.grayscale(tf.constant(x)).numpy()[..., 0],
                             _gray(x), atol=1e-6)
  expected = np.where(x >= 128 / 255, 1 - x, x)
  np.testing.assert_array_equal(aug.solarize(tf.constant(x)).numpy(), expected)


def test_blur_preserves_constants_and_zero_sigma_is_identity():
  x = _images()
  sigma = tf.constant([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
  out = aug.gaussian_blur(tf.constant(x), sigma, 9).numpy()
  np.testing.assert_allclose(out[:2], x[:2], atol=1e-6)
  flat = aug.gaussian_blur(tf.fill([B, SIZE, SIZE, 3], 0.3), sigma, 9)
  np.testing.assert_allclose(flat.numpy(), 0.3, atol=1e-6)
  assert out[2:].std() < x[2:].std()


def test_full_crop_resize_is_identity_and_flip_mirrors():
  images = (_images() * 255).astype(np.uint8)
  u = _uniforms(area=1.0, log_ratio=0.5, flip=0.9)
  out = aug.resized_crops(tf.constant(images), u, SIZE, (1.0, 1.0), (1.0, 1.0),
                          "bicubic", 0.5).numpy()
  np.testing.assert_allclose(out, images / 255, atol=1e-6)
  u = _uniforms(area=1.0, log_ratio=0.5, flip=0.1)
  out = aug.resized_crops(tf.constant(images), u, SIZE, (1.0, 1.0), (1.0, 1.0),
                          "bicubic", 0.5).numpy()
  np.testing.assert_allclose(out, images[:, :, ::-1] / 255, atol=1e-6)


def test_crop_boxes_fit_the_image():
  u = tf.random.stateless_uniform([256, aug.NUM_UNIFORMS], [1, 2])
  top, left, h, w = (t.numpy() for t in aug.crop_boxes(
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
  u = aug.draw(tf.constant([3, 4]), [B, 2])
  a, b = aug.two_views(images, u, recipe, 12)
  a2, _ = aug.two_views(images, u, recipe, 12)
  assert a.shape == (B, 12, 12, 3) and a.dtype == tf.float32
  np.testing.assert_array_equal(a.numpy(), a2.numpy())
  low = (0 - np.array(recipe.mean)) / np.array(recipe.std)
  high = (1 - np.array(recipe.mean)) / np.array(recipe.std)
  assert (a.numpy() >= low - 1e-5).all() and (a.numpy() <= high + 1e-5).all()
  assert not np.allclose(a.numpy(), b.numpy())


def test_view_grid_and_png(tmp_path):
  recipe = defaults.vicreg_views()
  views = np.zeros((5, 4, 4, 3), np.float32)
  grid = aug.view_grid(views, views, recipe.mean, recipe.std, pairs_per_row=2)
  assert grid.dtype == np.uint8 and grid.shape == (3 * 6 + 2, 2 * 10 + 2, 3)
  path = os.path.join(tmp_path, "sub", "views.png")
  aug.write_png(path, grid)
  decoded = tf.io.decode_png(tf.io.read_file(path)).numpy()
  np.testing.assert_array_equal(decoded, grid)
