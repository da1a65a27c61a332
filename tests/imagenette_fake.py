"""A tiny Imagenette in the layout of its download, prepared by the real tfds
builder, offline: a tfds image-classification dataset of variable-size JPEGs
other than STL10 and CIFAR-10.

imagenette2-160.tgz extracts to imagenette2-160/{train,val}/<wnid>/*.JPEG;
only the download is patched (tests/offline_tfds.py), so the builder's own
parsing, label names and split metadata are what the tests read. The images
are photographs (tests/folder_fake.py) of mixed sizes.
"""

import os

import numpy as np

import folder_fake
import offline_tfds

NAME = "imagenette/160px-v2"
# Three of Imagenette's ten classes: tench, English springer, cassette player.
CLASSES = folder_fake.WNIDS
_JPEG_KINDS = ((".JPEG", "RGB", "JPEG"), (".JPEG", "L", "JPEG"))


def write_download(root: str, *, per_class: int = 4,
                   seed: int = 0) -> dict[str, list[int]]:
  """Writes the extracted archive; {split: labels in file order}."""
  rng = np.random.default_rng(seed)
  labels = {}
  for split in ("train", "val"):
    labels[split] = []
    for wnid in CLASSES:
      directory = os.path.join(root, "imagenette2-160", split, wnid)
      # The builder keys examples by file name: ImageNet's <wnid>_<n> names.
      folder_fake.write_images(directory, per_class, rng, kinds=_JPEG_KINDS,
                               sizes=((48, 64), (60, 45), (50, 50)),
                               prefix=f"{wnid}_{split}")
      labels[split] += [wnid] * per_class
  return labels


def prepare(data_dir: str, download_root: str, *,
            file_format: str = "tfrecord", **sizes) -> None:
  write_download(download_root, **sizes)
  offline_tfds.prepare(NAME, data_dir, download_root, file_format=file_format)
