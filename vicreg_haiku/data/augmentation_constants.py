"""What the augmentation code shares: tf.data's (augmentations.py), the jitted
step's (device_augmentations.py) and the TF-free draws (photometric_draws.py).
"""

import math
from typing import Any, Callable, NamedTuple

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

# The views' indices in photometric_params and photometric: 0 and 1 the
# global views (the recipe's blur_prob and solarize_prob per view), LOCAL
# every local view (local_blur_prob, local_solarize_prob).
LOCAL = 2


def blur_kernel_size(recipe: ml_collections.ConfigDict, image_size: int) -> int:
  """The recipe's kernel size, or one that holds 3 sigma of the largest sigma.

  A fixed size keeps shapes static; Gaussian weights beyond 3 sigma of a
  smaller sigma are negligible, so this matches a kernel that grows with
  sigma. Single-bounce reflect padding caps the radius at size - 1.
  """
  size = recipe.blur_kernel_size or 2 * math.ceil(3 * recipe.blur_sigma[1]) + 1
  return min(size, 2 * image_size - 1)


def blur_and_solarize(recipe: ml_collections.ConfigDict,
                      index: int) -> tuple[float, float]:
  """View `index`'s probabilities of blur and of solarisation."""
  if index == LOCAL:
    return recipe.local_blur_prob, recipe.local_solarize_prob
  return recipe.blur_prob[index], recipe.solarize_prob[index]


class ArrayOps(NamedTuple):
  """The array operations photometric_params needs, of TF or of NumPy."""
  stack: Callable[..., Any]  # stack(arrays, axis)
  argsort: Callable[[Any], Any]  # along axis 1, as int32
  where: Callable[[Any, Any, float], Any]


def take(u, name: str):
  """The uniforms [B, n] of UNIFORM_SLICES[name] from u [B, NUM_UNIFORMS]."""
  return u[:, UNIFORM_SLICES[name]]


def between(u, low: float, high: float):
  """Uniforms in [0, 1) -> [low, high); float32 stays float32 (Python
  scalars do not promote), in the same op order for TF and NumPy."""
  return low + (high - low) * u


def photometric_params(u, recipe: ml_collections.ConfigDict, index: int,
                       ops: ArrayOps) -> dict[str, Any]:
  """Uniforms [B, N] -> view `index`'s photometric parameters per example.

  jitter [B] bool, factors [B, 3] (brightness, contrast, saturation), hue
  [B] (the shift), order [B, 4] int32 (stage k runs op order[:, k]; ops 0-3
  are brightness, contrast, saturation, hue), grayscale [B] bool,
  blur_sigma [B] (0: no blur), solarize [B] bool. tf.data's pipeline
  (augmentations) and the TF-free draws (photometric_draws) both call this,
  so the two give the same parameters bit for bit; both implementations of
  the photometric half (augmentations, device_augmentations) read them.
  """
  f = take(u, "factors")
  blur_prob, solarize_prob = blur_and_solarize(recipe, index)
  b, c, s, hue = recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue
  factors = ops.stack([between(f[:, 0], max(0.0, 1 - b), 1 + b),
                       between(f[:, 1], max(0.0, 1 - c), 1 + c),
                       between(f[:, 2], max(0.0, 1 - s), 1 + s)], axis=1)
  blurred = take(u, "blur")[:, 0] < blur_prob
  sigma = between(take(u, "sigma")[:, 0], *recipe.blur_sigma)
  return {
      "jitter": take(u, "jitter")[:, 0] < recipe.jitter_prob,
      "factors": factors,
      "hue": between(f[:, 3], -hue, hue),
      "order": ops.argsort(take(u, "order")),
      "grayscale": take(u, "grayscale")[:, 0] < recipe.grayscale_prob,
      "blur_sigma": ops.where(blurred, sigma, 0.0),
      "solarize": take(u, "solarize")[:, 0] < solarize_prob,
  }


def view_params(u, recipe: ml_collections.ConfigDict, ops: ArrayOps, *,
                local: bool = False) -> dict[str, Any]:
  """u [B, V, N] -> photometric_params of every view, each [B, V, ...]:
  the two global views' (V = 2), or with `local` V local views'."""
  indices = [LOCAL] * u.shape[1] if local else range(2)
  views = [photometric_params(u[:, v], recipe, index, ops)
           for v, index in enumerate(indices)]
  return {name: ops.stack([view[name] for view in views], axis=1)
          for name in views[0]}
