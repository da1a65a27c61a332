"""How far our photometric ops are from the official recipe's PIL ones.

  python benchmarks/pil_difference.py

The official VICReg code (facebookresearch/vicreg, augmentations.py) blurs
with PIL's ImageFilter.GaussianBlur(sigma) (three extended box blurs, edge
pixels repeated) and runs torchvision's ColorJitter on uint8 PIL images
(ImageEnhance blends and an 8-bit HSV round trip, each op rounded to uint8).
Ours (augmentations.py, device_augmentations.py) follow torchvision's tensor
formulas on floats in [0, 1]: an exact Gaussian over a fixed kernel with
reflect padding, unrounded blends and HSV. This prints, on scikit-learn's
two sample photos (427 x 640), the mean and max absolute difference per
pixel and channel on the 0-255 scale, ours against PIL and, as the check
that ours is what it claims, ours against torchvision on float tensors.
"""

# torchvision must be imported before TensorFlow (a segfault otherwise).
import torch  # pylint: disable=g-bad-import-order
import torchvision.transforms.functional as tvf  # pylint: disable=g-bad-import-order

import numpy as np
from PIL import Image
from PIL import ImageFilter
from sklearn import datasets as sk_datasets
import tensorflow as tf

from vicreg_haiku.data import augmentation_constants
from vicreg_haiku.data import photometric
from vicreg_haiku.utils import defaults

SIGMAS = (0.1, 0.5, 1.0, 2.0)  # the official sigma is U(0.1, 2.0)
# (op, factor): each of the official strengths' extremes (0.4, 0.4, 0.2,
# 0.1) and a middle value.
JITTER = (("brightness", 0.6), ("brightness", 1.4), ("contrast", 0.6),
          ("contrast", 1.4), ("saturation", 0.8), ("saturation", 1.2),
          ("hue", -0.1), ("hue", 0.05), ("hue", 0.1))
_OPS = ("brightness", "contrast", "saturation", "hue")


def _photos() -> list[np.ndarray]:
  return [np.asarray(image, np.uint8)
          for image in sk_datasets.load_sample_images().images]


def _ours_blur(image: np.ndarray, sigma: float) -> np.ndarray:
  size = augmentation_constants.blur_kernel_size(defaults.vicreg_views(),
                                                 min(image.shape[:2]))
  x = tf.constant(image[None] / 255.0, tf.float32)
  out = photometric.gaussian_blur(x, tf.constant([sigma]), size)
  return out.numpy()[0] * 255


def _torchvision_blur(image: np.ndarray, sigma: float) -> np.ndarray:
  size = augmentation_constants.blur_kernel_size(defaults.vicreg_views(),
                                                 min(image.shape[:2]))
  x = torch.from_numpy(image / 255.0).float().permute(2, 0, 1)
  return tvf.gaussian_blur(x, [size, size], [sigma, sigma]).permute(
      1, 2, 0).numpy() * 255


def _pil_blur(image: np.ndarray, sigma: float) -> np.ndarray:
  blurred = Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma))
  return np.asarray(blurred, np.float64)


def _ours_jitter(image: np.ndarray, op: str, factor: float) -> np.ndarray:
  """augmentations.color_jitter with only `op` away from the identity."""
  index = _OPS.index(op)
  factors = [1.0, 1.0, 1.0]
  hue = 0.0
  if op == "hue":
    hue = factor
  else:
    factors[index] = factor
  params = {"jitter": tf.constant([True]),
            "factors": tf.constant([factors], tf.float32),
            "hue": tf.constant([hue], tf.float32),
            "order": tf.constant([[index] + [i for i in range(4)
                                             if i != index]], tf.int32)}
  recipe = defaults.vicreg_views()
  out = photometric.color_jitter(tf.constant(image[None] / 255.0, tf.float32),
                                 params, recipe)
  return out.numpy()[0] * 255


_TORCHVISION_OPS = {"brightness": tvf.adjust_brightness,
                    "contrast": tvf.adjust_contrast,
                    "saturation": tvf.adjust_saturation,
                    "hue": tvf.adjust_hue}


def _torchvision_jitter(image: np.ndarray, op: str, factor: float
                        ) -> np.ndarray:
  x = torch.from_numpy(image / 255.0).float().permute(2, 0, 1)
  return _TORCHVISION_OPS[op](x, factor).permute(1, 2, 0).numpy() * 255


def _pil_jitter(image: np.ndarray, op: str, factor: float) -> np.ndarray:
  """What the official ColorJitter does: torchvision's functional on PIL."""
  out = _TORCHVISION_OPS[op](Image.fromarray(image), factor)
  return np.asarray(out, np.float64)


def _row(name: str, ours, pil, torchvision) -> str:
  versus_pil = np.concatenate([np.abs(o - p).ravel()
                               for o, p in zip(ours, pil)])
  versus_tv = np.concatenate([np.abs(o - t).ravel()
                              for o, t in zip(ours, torchvision)])
  return (f"| {name} | {versus_pil.mean():.3f} | {versus_pil.max():.1f} | "
          f"{np.mean(versus_pil > 1):.3f} | {versus_tv.max():.1e} |")


def main():
  photos = _photos()
  print("| op | ours vs PIL: mean abs | max abs | fraction > 1 level | "
        "ours vs torchvision on floats: max abs |")
  print("|---|---|---|---|---|")
  for sigma in SIGMAS:
    print(_row(f"Gaussian blur, sigma {sigma}",
               [_ours_blur(p, sigma) for p in photos],
               [_pil_blur(p, sigma) for p in photos],
               [_torchvision_blur(p, sigma) for p in photos]))
  for op, factor in JITTER:
    print(_row(f"{op} {factor:g}",
               [_ours_jitter(p, op, factor) for p in photos],
               [_pil_jitter(p, op, factor) for p in photos],
               [_torchvision_jitter(p, op, factor) for p in photos]))
  print("\n(0-255 scale, over every pixel and channel of scikit-learn's two "
        "sample photos, 427 x 640)")


if __name__ == "__main__":
  main()
