"""Folders of real photographs in the layouts users have, for tests.

Every image is a crop of one of scikit-learn's two sample photographs
(china.jpg, flower.jpg), resized with PIL and saved in a variety of sizes and
modes: RGB, grayscale and CMYK JPEGs, RGBA, palette and 16-bit PNGs, and a
PNG named .JPEG (ImageNet has one). `bad_files` adds what a big real folder
also holds: zero-byte, truncated and corrupted JPEGs and a text file named
.jpg.
"""

import functools
import os
from typing import Sequence

import numpy as np
from PIL import Image

# ImageNet-style class names: WordNet ids, as train/<wnid>/ holds them.
WNIDS = ("n01440764", "n02102040", "n02979186")
# (file extension, PIL mode, PIL format): the kinds of file written in turn.
KINDS = ((".JPEG", "RGB", "JPEG"), (".jpg", "L", "JPEG"),
         (".jpg", "CMYK", "JPEG"), (".png", "RGBA", "PNG"),
         (".png", "P", "PNG"), (".png", "I;16", "PNG"),
         (".JPEG", "RGB", "PNG"))


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
  from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top
  return tuple(load_sample_images().images)


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A random crop of a sample photo, resized to uint8 [height, width, 3]."""
  source = _photos()[rng.integers(len(_photos()))]
  h = rng.integers(source.shape[0] // 3, source.shape[0] + 1)
  w = rng.integers(source.shape[1] // 3, source.shape[1] + 1)
  top = rng.integers(0, source.shape[0] - h + 1)
  left = rng.integers(0, source.shape[1] - w + 1)
  crop = Image.fromarray(source[top:top + h, left:left + w])
  return np.asarray(crop.resize((width, height), Image.BICUBIC))


def save(path: str, pixels: np.ndarray, mode: str = "RGB",
         fmt: str = "JPEG") -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = Image.fromarray(pixels)
  if mode == "I;16":
    gray = np.asarray(image.convert("L"), np.uint16) * 257
    image = Image.fromarray(gray)
  elif mode != "RGB":
    image = image.convert(mode)
  image.save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def write_images(directory: str, count: int, rng: np.random.Generator, *,
                 sizes: Sequence[tuple[int, int]] = ((40, 56), (64, 48),
                                                     (37, 37), (50, 75)),
                 kinds: Sequence[tuple[str, str, str]] = KINDS,
                 prefix: str = "img") -> list[str]:
  """`count` images of mixed sizes and kinds; returns their paths."""
  paths = []
  for i in range(count):
    extension, mode, fmt = kinds[i % len(kinds)]
    height, width = sizes[i % len(sizes)]
    path = os.path.join(directory, f"{prefix}_{i:04d}{extension}")
    save(path, photo(rng, height, width), mode, fmt)
    paths.append(path)
  return paths


def image_folder(root: str, *, splits: Sequence[str] = ("train", "val"),
                 classes: Sequence[str] = WNIDS, per_class: int = 7,
                 seed: int = 0, **kwargs) -> dict[str, list[tuple[str, int]]]:
  """ROOT/<split>/<class>/*: {split: [(path, class index)]} (sorted)."""
  rng = np.random.default_rng(seed)
  layout = {}
  for split in splits:
    layout[split] = []
    for label, name in enumerate(sorted(classes)):
      for path in write_images(os.path.join(root, split, name), per_class,
                               rng, **kwargs):
        layout[split].append((path, label))
  return layout


def bad_files(directory: str, rng: np.random.Generator) -> list[str]:
  """Files that must be found while indexing and left out."""
  os.makedirs(directory, exist_ok=True)
  good = os.path.join(directory, "source.tmp")
  save(good, photo(rng, 60, 80))
  with open(good, "rb") as f:
    data = f.read()
  os.remove(good)
  corrupt = bytearray(data)
  for k in range(len(data) // 3, len(data) // 3 + 200):
    corrupt[k] = (corrupt[k] * 7 + 13) % 256
  files = {"zero_bytes.jpg": b"", "truncated.jpg": data[:len(data) // 2],
           "corrupt.jpg": bytes(corrupt), "not_an_image.jpg": b"hello\n"}
  paths = []
  for name, content in files.items():
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
      f.write(content)
    paths.append(path)
  return paths
