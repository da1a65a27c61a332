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

from vicreg_haiku.data import augmentation_constants

Recipe = ml_collections.ConfigDict


def draw_uniforms(rng: np.random.Generator,
                  shape: Sequence[int]) -> np.ndarray:
  """Uniforms [*shape, NUM_UNIFORMS] in [0, 1), float32 as tf.data's."""
  return rng.random((*shape, augmentation_constants.NUM_UNIFORMS),
                    dtype=np.float32)


# NumPy's ops for augmentation_constants.photometric_params.
_NUMPY_OPS = augmentation_constants.ArrayOps(
    stack=np.stack, argsort=lambda x: np.argsort(x, axis=1).astype(np.int32),
    where=lambda condition, x, y: np.where(condition, x, np.float32(y)))


def view_params(u: np.ndarray, recipe: Recipe, *,
                local: bool = False) -> dict[str, np.ndarray]:
  """u [B, V, N] -> each view's photometric parameters, each [B, V, ...]
  (augmentation_constants.view_params: with `local`, local views')."""
  return augmentation_constants.view_params(u, recipe, _NUMPY_OPS,
                                            local=local)
