"""What the two implementations of the photometric half share: tf.data's
(augmentations.py) and the jitted step's (device_augmentations.py)."""

import math

import ml_collections

# ITU-R 601-2 luma, as PIL's "L" conversion and torchvision's rgb_to_grayscale.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
# ImageOps.solarize(img) inverts pixels >= 128; the same on the [0, 1] scale.
SOLARIZE_THRESHOLD = 128 / 255


def blur_kernel_size(recipe: ml_collections.ConfigDict, image_size: int) -> int:
  """The recipe's kernel size, or one that holds 3 sigma of the largest sigma.

  A fixed size keeps shapes static; Gaussian weights beyond 3 sigma of a
  smaller sigma are negligible, so this matches a kernel that grows with
  sigma. Single-bounce reflect padding caps the radius at size - 1.
  """
  size = recipe.blur_kernel_size or 2 * math.ceil(3 * recipe.blur_sigma[1]) + 1
  return min(size, 2 * image_size - 1)
