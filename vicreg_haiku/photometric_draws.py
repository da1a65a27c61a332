"""Each view's photometric parameters in NumPy: augment_on=device without TF.

With `config.pretrain.augment_on = "device"` the training step reads, beside
the uint8 crops, each view's photometric parameters, which the tf.data
pipeline makes from the view's uniforms with augmentations.view_params. This
is the same map in NumPy, for what feeds that step without TensorFlow: the
step benchmark on an accelerator image that has none
(benchmarks/train_step.py), or an input pipeline other than tf.data. On the
same uniforms both give the same parameters, bit for bit; drawn with
`draw_uniforms`, they have the distributions of the tf.data pipeline's
(tests/test_photometric_draws.py checks both).
"""

from typing import Sequence

import ml_collections
import numpy as np

from vicreg_haiku import augmentation_constants

Recipe = ml_collections.ConfigDict


def draw_uniforms(rng: np.random.Generator,
                  shape: Sequence[int]) -> np.ndarray:
  """Uniforms [*shape, NUM_UNIFORMS] in [0, 1), float32 as tf.data's."""
  return rng.random((*shape, augmentation_constants.NUM_UNIFORMS),
                    dtype=np.float32)


def _take(u: np.ndarray, name: str) -> np.ndarray:
  return u[:, augmentation_constants.UNIFORM_SLICES[name]]


def _between(u: np.ndarray, low: float, high: float) -> np.ndarray:
  # float32 throughout (Python scalars do not promote), as TF's op order.
  return low + (high - low) * u


def photometric_params(u: np.ndarray, recipe: Recipe,
                       index: int) -> dict[str, np.ndarray]:
  """Uniforms [B, N] -> view `index`'s parameters (augmentations'
  photometric_params: jitter, factors, hue, order, grayscale, blur_sigma,
  solarize, with its dtypes and shapes)."""
  f = _take(u, "factors")
  b, c, s = recipe.brightness, recipe.contrast, recipe.saturation
  factors = np.stack([_between(f[:, 0], max(0.0, 1 - b), 1 + b),
                      _between(f[:, 1], max(0.0, 1 - c), 1 + c),
                      _between(f[:, 2], max(0.0, 1 - s), 1 + s)], axis=1)
  blurred = _take(u, "blur")[:, 0] < recipe.blur_prob[index]
  sigma = _between(_take(u, "sigma")[:, 0], *recipe.blur_sigma)
  return {
      "jitter": _take(u, "jitter")[:, 0] < recipe.jitter_prob,
      "factors": factors,
      "hue": _between(f[:, 3], -recipe.hue, recipe.hue),
      "order": np.argsort(_take(u, "order"), axis=1).astype(np.int32),
      "grayscale": _take(u, "grayscale")[:, 0] < recipe.grayscale_prob,
      "blur_sigma": np.where(blurred, sigma, np.float32(0)),
      "solarize": _take(u, "solarize")[:, 0] < recipe.solarize_prob[index],
  }


def view_params(u: np.ndarray, recipe: Recipe) -> dict[str, np.ndarray]:
  """u [B, 2, N] -> photometric_params of both views, each [B, 2, ...]."""
  views = [photometric_params(u[:, v], recipe, v) for v in range(2)]
  return {name: np.stack([views[0][name], views[1][name]], axis=1)
          for name in views[0]}
