"""The digits source: scikit-learn's 8x8 digits, shipped in its wheel, so the
embedded default runs offline."""

import functools

import numpy as np

from vicreg_haiku.data import class_filter
from vicreg_haiku.data import shards

_DIGITS_TEST_FRACTION = 0.3
_DIGITS_SPLIT_SEED = 0


@functools.cache
def _digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """scikit-learn's digits as uint8 RGB, split 70/30 stratified, fixed seed."""
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top
  digits = sk_datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  images = np.repeat(images[..., None], 3, axis=-1)
  labels = digits.target.astype(np.int32)
  train, test = model_selection.train_test_split(
      np.arange(len(labels)), test_size=_DIGITS_TEST_FRACTION,
      random_state=_DIGITS_SPLIT_SEED, stratify=labels)
  return {name: (images[np.sort(idx)], labels[np.sort(idx)])
          for name, idx in (("train", train), ("test", test))}


def open_split(key: shards.SourceKey, split: str) -> shards.Split:
  """The digits split `split` (names joined by "+")."""
  parts = split.split("+")
  unknown = [p for p in parts if p not in ("train", "test")]
  if unknown:
    raise shards.DataError(
        f"digits has splits 'train' and 'test' (joined with '+'),"
        f" not {unknown}.")
  images = np.concatenate([_digits()[p][0] for p in parts])
  labels = np.concatenate([_digits()[p][1] for p in parts])
  names = tuple(str(c) for c in range(10))
  if key.classes:
    relabel = class_filter.relabelling(names, key.classes, f"digits[{split}]")
    keep = relabel[labels] >= 0
    images, labels = images[keep], relabel[labels[keep]]
    names = tuple(sorted(key.classes, key=names.index))
  info = shards.SplitInfo(f"digits[{split}]", len(labels), names,
                          images.shape[1:3])

  def make_shard(index, count, examples=None):
    ids = shards.contiguous_piece(examples, len(labels), index, count)
    return shards.Shard(info, len(ids), True,
                        shards.in_memory_read(images[ids], labels[ids]), ids)

  return shards.Split(info, make_shard, lambda: labels)
