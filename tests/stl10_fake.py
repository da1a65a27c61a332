"""A tiny STL10 in the real binary layout, prepared by the real tfds builder.

The files mirror stl10_binary.tar.gz: each image is stored channel-first and
column-major (3 x 96 x 96, x fastest along the height), labels are 1-based
uint8. Only the download is patched, as tfds' own builder tests do, so the
builder's parsing is what the tests exercise.
"""

import os

import numpy as np

import offline_tfds

SIZE = 96
CLASS_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse",
               "monkey", "ship", "truck")


def _write_images(path: str, images: np.ndarray) -> None:
  # tfds reads reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1): invert that.
  np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tofile(path)


def write_binaries(root: str, *, num_train: int = 24, num_test: int = 20,
                   num_unlabelled: int = 40,
                   seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Writes ROOT/stl10_binary/*; returns {split: (images HWC, labels 0-based)}."""
  rng = np.random.default_rng(seed)
  directory = os.path.join(root, "stl10_binary")
  os.makedirs(directory, exist_ok=True)
  splits = {}
  for split, prefix, n in (("train", "train", num_train),
                           ("test", "test", num_test),
                           ("unlabelled", "unlabeled", num_unlabelled)):
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    _write_images(os.path.join(directory, f"{prefix}_X.bin"), images)
    if split == "unlabelled":
      labels = np.full((n,), -1, np.int64)
    else:
      labels = np.arange(n) % len(CLASS_NAMES)
      (labels + 1).astype(np.uint8).tofile(
          os.path.join(directory, f"{prefix}_y.bin"))
    splits[split] = (images, labels)
  with open(os.path.join(directory, "class_names.txt"), "w") as f:
    f.write("\n".join(CLASS_NAMES) + "\n")
  with open(os.path.join(directory, "fold_indices.txt"), "w") as f:
    for fold in range(10):
      f.write(" ".join(str(i) for i in range(fold, num_train, 10)) + " \n")
  return splits


def prepare(data_dir: str, download_root: str,
            **sizes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Writes the binaries to download_root and prepares stl10 in data_dir."""
  splits = write_binaries(download_root, **sizes)
  offline_tfds.prepare("stl10", data_dir, download_root)
  return splits
