"""What the augmentation code shares: tf.data's (augmentations.py), the jitted
step's (device_augmentations.py) and the TF-free draws (photometric_draws.py).
"""

import math

import ml_collections
import numpy as np

# ITU-R 601-2 luma, as PIL's "L" conversion and torchvision's rgb_to_grayscale.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
# ImageOps.solarize(img) inverts pixels >= 128; the same on the [0, 1] scale.
SOLARIZE_THRESHOLD = 128 / 255

# A view's randomness is one vector of NUM_UNIFORMS uniforms in [0, 1); the
# slice UNIFORM_SLICES[name] of it decides that part of the view (ten
# candidate crop areas and ratios as torchvision's ten tries, four jitter
# factors, four keys whose argsort is the jitter order, ...).
_LAYOUT = dict(area=10, log_ratio=10, top=1, left=1, flip=1, rotation=1,
               jitter=1, factors=4, order=4, grayscale=1, blur=1, sigma=1,
               solarize=1)
_ENDS = np.cumsum(list(_LAYOUT.values()))
UNIFORM_SLICES = {name: slice(int(end) - n, int(end))
                  for (name, n), end in zip(_LAYOUT.items(), _ENDS)}
NUM_UNIFORMS = int(_ENDS[-1])


def blur_kernel_size(recipe: ml_collections.ConfigDict, image_size: int) -> int:
  """The recipe's kernel size, or one that holds 3 sigma of the largest sigma.

  A fixed size keeps shapes static; Gaussian weights beyond 3 sigma of a
  smaller sigma are negligible, so this matches a kernel that grows with
  sigma. Single-bounce reflect padding caps the radius at size - 1.
  """
  size = recipe.blur_kernel_size or 2 * math.ceil(3 * recipe.blur_sigma[1]) + 1
  return min(size, 2 * image_size - 1)
