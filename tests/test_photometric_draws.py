"""The TF-free photometric parameters (photometric_draws), which the step
benchmark feeds the device path, against the tf.data pipeline's
(augmentations.draw + augmentations.view_params): bit for bit on the same
uniforms, and in distribution as the benchmark draws them."""

import numpy as np
import pytest
import tensorflow as tf

from vicreg_haiku.data import augmentations
from vicreg_haiku.data import device_crops
from vicreg_haiku.data import example_batches
from vicreg_haiku.data import photometric
from vicreg_haiku.data import photometric_draws
from vicreg_haiku.utils import defaults

_RECIPES = pytest.mark.parametrize("name", ["vicreg", "seed"])


def _recipe(name):
  return getattr(defaults, f"{name}_views")()


def _edge_uniforms(rng) -> np.ndarray:
  """[B, 2, N]: random rows, then rows that sit on the recipes'
  probabilities (u < p must be strict), at 0 and just below 1. The order
  keys stay distinct (TF's argsort does not promise an order for ties)."""
  random = rng.random((64, 2, augmentations.NUM_UNIFORMS), dtype=np.float32)
  edges = [0.0, 0.1, 0.2, 0.8, 0.5, np.nextafter(np.float32(1), 0)]
  edge = np.repeat(np.asarray(edges, np.float32)[:, None, None], 2, axis=1)
  edge = np.repeat(edge, augmentations.NUM_UNIFORMS, axis=2)
  order = augmentations._SLICES["order"]  # pylint: disable=protected-access
  edge[:, :, order] = rng.random(edge[:, :, order].shape, dtype=np.float32)
  return np.concatenate([random, edge])


@_RECIPES
def test_same_uniforms_give_the_same_parameters(name):
  recipe = _recipe(name)
  u = _edge_uniforms(np.random.default_rng(0))
  expected = photometric.view_params(tf.constant(u), recipe)
  actual = photometric_draws.view_params(u, recipe)
  assert sorted(actual) == sorted(expected)
  for key, value in expected.items():
    value = value.numpy()
    assert actual[key].dtype == value.dtype, key
    np.testing.assert_array_equal(actual[key], value, err_msg=key)


def _benchmark_params(name: str, batch: int) -> dict[str, np.ndarray]:
  """What the step benchmark and the TPU plan feed the step with augment_on
  device (example_batches)."""
  config = defaults.base_config()
  config.dataset.image_size = 4
  config.pretrain.augment_on = "device"
  config.pretrain.augmentation = name
  config.pretrain.canvas_size = 5
  params = example_batches.pretrain_batch(config, batch, image=(3, 5))
  assert params["canvas"].shape == (batch, 5, 5, 3)
  assert params["rows"].shape[:3] == (batch, 2, 4)
  return {k: v for k, v in params.items()
          if k not in device_crops.GEOMETRY}


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
  """Two-sample Kolmogorov-Smirnov: the largest gap of the two CDFs."""
  grid = np.concatenate([a, b])
  gap = (np.searchsorted(np.sort(a), grid, side="right") / len(a)
         - np.searchsorted(np.sort(b), grid, side="right") / len(b))
  return float(np.max(np.abs(gap)))


def _same_fraction(a: np.ndarray, b: np.ndarray, nominal: float) -> None:
  """Fractions of True within 5 binomial sigmas of each other and of the
  recipe's probability (exact where that is 0 or 1)."""
  sigma = np.sqrt(nominal * (1 - nominal) / len(a))
  assert abs(a.mean() - nominal) <= 5 * sigma, (a.mean(), nominal)
  assert abs(a.mean() - b.mean()) <= 5 * sigma * np.sqrt(2), (a.mean(),
                                                              b.mean())


def _same_distribution(a: np.ndarray, b: np.ndarray, low: float,
                       high: float) -> None:
  assert low <= a.min() and a.max() <= high, (a.min(), a.max(), low, high)
  # Rejects equal distributions with probability 1e-6.
  limit = np.sqrt(-0.5 * np.log(0.5e-6)) * np.sqrt(1 / len(a) + 1 / len(b))
  assert _ks_statistic(a, b) <= limit


@_RECIPES
def test_benchmark_draws_have_the_pipelines_distributions(name):
  recipe = _recipe(name)
  n = 20000
  ours = _benchmark_params(name, n)
  theirs = {
      k: v.numpy() for k, v in photometric.view_params(
          augmentations.draw(tf.constant([3, 4]), [n, 2]), recipe).items()
  }
  jitter_ranges = [(max(0.0, 1 - s), 1 + s) for s in (
      recipe.brightness, recipe.contrast, recipe.saturation)]
  for view in range(2):
    mine = {k: v[:, view] for k, v in ours.items()}
    ref = {k: v[:, view] for k, v in theirs.items()}
    for key, nominal in (("jitter", recipe.jitter_prob),
                         ("grayscale", recipe.grayscale_prob),
                         ("solarize", recipe.solarize_prob[view])):
      _same_fraction(mine[key], ref[key], nominal)
    _same_fraction(mine["blur_sigma"] > 0, ref["blur_sigma"] > 0,
                   recipe.blur_prob[view])
    blurred = mine["blur_sigma"][mine["blur_sigma"] > 0]
    _same_distribution(blurred, ref["blur_sigma"][ref["blur_sigma"] > 0],
                       *recipe.blur_sigma)
    for op, (low, high) in enumerate(jitter_ranges):
      _same_distribution(mine["factors"][:, op], ref["factors"][:, op], low,
                         high)
    _same_distribution(mine["hue"], ref["hue"], -recipe.hue, recipe.hue)
    # Every order is a permutation; each op as likely at every stage.
    np.testing.assert_array_equal(np.sort(mine["order"], axis=1),
                                  np.tile(np.arange(4), (n, 1)))
    for stage in range(4):
      for op in range(4):
        _same_fraction(mine["order"][:, stage] == op,
                       ref["order"][:, stage] == op, 0.25)
