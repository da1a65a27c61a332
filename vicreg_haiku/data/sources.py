"""Where examples come from: digits, folders of images, tfds datasets.

config.dataset.name picks the source:
- "digits": scikit-learn's 8x8 digits (in the wheel: the default runs offline).
- "folder": config.dataset.folder=ROOT (local or gs://); a split is a path
  below ROOT ("train", "unlabelled/2024", "." for ROOT itself) and "+" joins
  splits; folder_index.py says how a split is labelled and checked.
- any other name: a tensorflow-datasets image-classification dataset, e.g.
  stl10, cifar10, imagenet2012, imagenette; its splits, classes and image
  shapes come from the builder's info.

A process reads its shard of a split (Shard) in one of three ways, chosen by
size, not by name:
- decoded in host memory, when every image of the split has one shape and
  the shard fits in config.dataset.in_memory_max_gb (digits, CIFAR-10, STL10,
  small folders): decoded once, then only sliced;
- encoded, each example read from storage by its index: folders (one file an
  example) and tfds datasets stored as ArrayRecord, tfds' random-access
  format. Host memory is then bounded by batch x prefetch, not by the data;
- encoded in host memory: tfds datasets stored as TFRecord, which can only
  be read in sequence, when the encoded shard fits; a larger one is refused
  with the command that rewrites it as ArrayRecord.
All three are read by example index, so the batch at step k stays a pure
function of (config, k) (datasets.py).

Shards are disjoint and cover the split: tfds shards are contiguous (tfds
shuffled the records when it wrote them), folder shards strided (a folder's
sorted files are grouped by class). `config.dataset.classes` keeps only the
named classes of the labelled splits (ImageNet-100 over ImageNet), labelled
by their position in the kept classes.
"""

import dataclasses
import functools
from typing import Optional

import numpy as np

from vicreg_haiku.data import class_filter
from vicreg_haiku.data import digits
from vicreg_haiku.data import folder
from vicreg_haiku.data import shards
from vicreg_haiku.data import tfds_source


def split_info(config: shards.Config, split: str,
               label_fraction: float = 1.0) -> shards.SplitInfo:
  """The split's facts; with label_fraction < 1, of its labelled subset."""
  return _subset(_source_key(config), split, label_fraction, config.seed)[0]


def shard(config: shards.Config, split: str, index: int, count: int,
          label_fraction: float = 1.0) -> shards.Shard:
  """This process's shard of `split` (cached: read or decoded once).

  label_fraction < 1: of a fixed random pick (per config.seed) of that
  fraction of every class's examples (at least one each), as the labelled
  set of a semi-supervised fine-tune.
  """
  return _shard(_source_key(config), split, index, count, label_fraction,
                config.seed)


def num_classes(config: shards.Config) -> int:
  """Classes of the labelled data: the train split's, else the source's."""
  info = split_info(config, config.dataset.train_split)
  if info.labelled:
    return len(info.class_names)
  raise shards.DataError(
      f"{info.description} is unlabelled: there are no classes "
      "to count; point --config.dataset.train_split at labelled "
      "images")


def _source_key(config: shards.Config) -> shards.SourceKey:
  d = config.dataset
  return shards.SourceKey(d.name, d.data_dir, d.manual_dir, d.folder,
                          d.index_dir, class_filter.class_filter(d.classes),
                          d.in_memory_max_gb * 2**30)


@functools.cache
def _split(key: shards.SourceKey, split: str) -> shards.Split:
  if key.name == "digits":
    return digits.open_split(key, split)
  if key.name == "folder":
    return folder.open_split(key, split)
  return tfds_source.open_split(key, split)


def per_class_pick(labels: np.ndarray, fraction: float,
                   seed: int) -> np.ndarray:
  """Sorted indices of round(fraction x its count) examples of every class
  (at least one), a random pick fixed by `seed`."""
  rng = np.random.default_rng(seed)
  picks = []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    keep = max(1, int(round(fraction * len(members))))
    picks.append(rng.permutation(members)[:keep])
  return np.sort(np.concatenate(picks))


@functools.cache
def _subset(key: shards.SourceKey, split: str, fraction: float,
            seed: int) -> tuple[shards.SplitInfo, Optional[np.ndarray]]:
  """(info, examples): the split's labelled subset (all: examples None)."""
  base = _split(key, split)
  if fraction >= 1:
    return base.info, None
  if not 0 < fraction:
    raise shards.DataError(f"label_fraction={fraction!r}: a fraction in (0, 1]")
  if not base.info.labelled:
    raise shards.DataError(
        f"a fraction of the labels of {base.info.description}, "
        "which is unlabelled: point it at class subdirectories")
  examples = per_class_pick(base.labels(), fraction, seed)
  info = dataclasses.replace(
      base.info, num_examples=len(examples),
      description=f"{base.info.description} ({fraction:g} of its labels)")
  return info, examples


@functools.cache
def _shard(key: shards.SourceKey, split: str, index: int, count: int,
           fraction: float, seed: int) -> shards.Shard:
  info, examples = _subset(key, split, fraction, seed)
  return dataclasses.replace(
      _split(key, split).make_shard(index, count, examples), info=info)
