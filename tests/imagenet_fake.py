"""A tiny ILSVRC-2012 in the layout of its tars, for the real tfds builder.

ILSVRC2012_img_train.tar holds one tar per class (<wnid>.tar of
<wnid>_<n>.JPEG); ILSVRC2012_img_val.tar holds ILSVRC2012_val_<8 digits>.JPEG,
whose labels tfds reads from the list it ships, in file-name order: the first
N validation images get its first N labels. Images are photographs
(tests/folder_fake.py).
"""

import io
import os
import tarfile

import numpy as np
from PIL import Image

import folder_fake


def _jpeg(rng) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(folder_fake.photo(rng, 40, 52)).save(buffer, format="JPEG",
                                                       quality=90)
  return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_tars(manual_dir: str, classes, *, per_class: int = 2,
               num_val: int = 6, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  os.makedirs(manual_dir, exist_ok=True)
  with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"),
                    "w") as train:
    for wnid in classes:
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode="w") as class_tar:
        for i in range(per_class):
          _add(class_tar, f"{wnid}_{i}.JPEG", _jpeg(rng))
      _add(train, f"{wnid}.tar", inner.getvalue())
  with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"),
                    "w") as val:
    for i in range(1, num_val + 1):
      _add(val, f"ILSVRC2012_val_{i:08d}.JPEG", _jpeg(rng))


def validation_labels(num_val: int) -> list[str]:
  """The wnids tfds gives the first num_val validation images."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  path = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
  with open(path) as f:
    return f.read().split()[:num_val]
