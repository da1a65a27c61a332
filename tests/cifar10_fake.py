"""A tiny CIFAR-10 in the real binary layout, prepared by the real tfds builder.

The files mirror cifar-10-binary.tar.gz: each record is one label byte then
the image, channel-first and row-major (3 x 32 x 32); the train split is
spread over five batch files. Only the download is patched, as for STL10, so
the builder's parsing is what the tests exercise.
"""

import os

import numpy as np

import offline_tfds

SIZE = 32
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
               "horse", "ship", "truck")
_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST_FILES = ("test_batch.bin",)


def _write_records(path: str, images: np.ndarray, labels: np.ndarray) -> None:
  # tfds reads reshape(3, 32, 32).transpose(1, 2, 0) after the label byte.
  pixels = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
  records = np.concatenate([labels.astype(np.uint8)[:, None], pixels], axis=1)
  np.ascontiguousarray(records).tofile(path)


def write_binaries(root: str, *, train_per_file: int = 4, num_test: int = 20,
                   seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Writes ROOT/cifar-10-batches-bin/*; returns {split: (images, labels)}.

  Images are uint8 HWC, labels 0-based.
  """
  rng = np.random.default_rng(seed)
  directory = os.path.join(root, "cifar-10-batches-bin")
  os.makedirs(directory, exist_ok=True)
  splits = {}
  for split, files, n in (("train", _TRAIN_FILES,
                           train_per_file * len(_TRAIN_FILES)),
                          ("test", _TEST_FILES, num_test)):
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    labels = rng.integers(0, len(CLASS_NAMES), (n,))
    for name, part in zip(files, np.array_split(np.arange(n), len(files))):
      _write_records(os.path.join(directory, name), images[part], labels[part])
    splits[split] = (images, labels)
  with open(os.path.join(directory, "batches.meta.txt"), "w") as f:
    f.write("\n".join(CLASS_NAMES) + "\n")
  return splits


def prepare(data_dir: str, download_root: str,
            **sizes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Writes the binaries to download_root and prepares cifar10 in data_dir."""
  splits = write_binaries(download_root, **sizes)
  offline_tfds.prepare("cifar10", data_dir, download_root)
  return splits
