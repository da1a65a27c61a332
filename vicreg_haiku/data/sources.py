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

A labelled split named both train_split and test_split (a folder's
default ".", or one tfds split) would score the probes and the kNN monitor
on the images they were fit on: hold_out() then renames them to
"<split>%held_out" (config.dataset.held_out_fraction of every class, a fixed
pick per seed: what is scored) and "<split>%rest" (what is fit on, and what
label fractions pick from).
"""

import dataclasses
import functools
import os
from typing import Optional, Sequence

import numpy as np

from vicreg_haiku.data import class_filter
from vicreg_haiku.data import digits
from vicreg_haiku.data import folder
from vicreg_haiku.data import shards
from vicreg_haiku.data import tfds_source

HELD_OUT, REST = "%held_out", "%rest"
# Draws of config.seed for the held-out pick, apart from the label picks.
_HOLD_OUT_STREAM = 1


def split_info(config: shards.Config, split: str,
               label_fraction: float = 1.0) -> shards.SplitInfo:
  """The split's facts; with label_fraction < 1, of its labelled subset."""
  return _subset(_source_key(config), split, label_fraction, config.seed,
                 config.dataset.held_out_fraction)[0]


def shard(config: shards.Config, split: str, index: int, count: int,
          label_fraction: float = 1.0) -> shards.Shard:
  """This process's shard of `split` (cached: read or decoded once).

  label_fraction < 1: of a fixed random pick (per config.seed) of that
  fraction of every class's examples (at least one each), as the labelled
  set of a semi-supervised fine-tune.
  """
  return _shard(_source_key(config), split, index, count, label_fraction,
                config.seed, config.dataset.held_out_fraction)


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
                   seed: int | Sequence[int]) -> np.ndarray:
  """Sorted indices of round(fraction x its count) examples of every class
  (at least one), a random pick fixed by `seed`."""
  rng = np.random.default_rng(seed)
  picks = []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    keep = max(1, int(round(fraction * len(members))))
    picks.append(rng.permutation(members)[:keep])
  return np.sort(np.concatenate(picks))


def _role(split: str) -> tuple[str, Optional[str]]:
  """("train", "%rest") for "train%rest"; (split, None) without a role."""
  for role in (HELD_OUT, REST):
    if split.endswith(role):
      return split.removesuffix(role), role
  return split, None


def _held_out(base: shards.Split, role: str, fraction: float,
              seed: int) -> tuple[shards.SplitInfo, np.ndarray]:
  """The held-out examples of a labelled split, or the rest."""
  labels = base.labels()
  held = per_class_pick(labels, fraction, [seed, _HOLD_OUT_STREAM])
  rest = np.setdiff1d(np.arange(len(labels)), held)
  missing = np.setdiff1d(labels[held], labels[rest])
  if len(missing):
    name = base.info.class_names[missing[0]]
    raise shards.DataError(
        f"class {name!r} of {base.info.description} has one image: holding "
        f"out {fraction:g} of every class for evaluation leaves it none to "
        "train on; add images or give a separate --config.dataset.test_split")
  examples = held if role == HELD_OUT else rest
  what = "held out for evaluation" if role == HELD_OUT else "not held out"
  info = dataclasses.replace(
      base.info, num_examples=len(examples),
      description=f"{base.info.description} (the {len(examples)} images "
      f"{what}: {fraction:g} of every class)")
  return info, examples


@functools.cache
def _subset(key: shards.SourceKey, split: str, fraction: float, seed: int,
            held_out: float
            ) -> tuple[shards.SplitInfo, Optional[np.ndarray]]:
  """(info, examples): the split's labelled subset (all: examples None)."""
  name, role = _role(split)
  base = _split(key, name)
  info, examples = base.info, None
  if role is not None:
    info, examples = _held_out(base, role, held_out, seed)
  if fraction >= 1:
    return info, examples
  if not 0 < fraction:
    raise shards.DataError(f"label_fraction={fraction!r}: a fraction in (0, 1]")
  if not info.labelled:
    raise shards.DataError(
        f"a fraction of the labels of {info.description}, "
        "which is unlabelled: point it at class subdirectories")
  every = np.arange(info.num_examples) if examples is None else examples
  examples = every[per_class_pick(base.labels()[every], fraction, seed)]
  info = dataclasses.replace(
      info, num_examples=len(examples),
      description=f"{info.description} ({fraction:g} of its labels)")
  return info, examples


@functools.cache
def _shard(key: shards.SourceKey, split: str, index: int, count: int,
           fraction: float, seed: int, held_out: float) -> shards.Shard:
  info, examples = _subset(key, split, fraction, seed, held_out)
  return dataclasses.replace(
      _split(key, _role(split)[0]).make_shard(index, count, examples),
      info=info)


def _parts(config: shards.Config, split: str) -> list[str]:
  """A split's "+"-joined parts, folders' as normalised paths below ROOT."""
  parts = split.split("+")
  if config.dataset.name == "folder":
    return [os.path.normpath(part) for part in parts]
  return parts


def _inside(part: str, other: str) -> bool:
  return part != other and (other == "." or part.startswith(other + "/"))


def hold_out(config: shards.Config) -> Optional[str]:
  """When config's labelled train and test splits are one split, renames
  them to its rest and its held-out part (see the module docstring);
  returns what was done, in words, else None. A folder split inside the
  other is refused: its images would be scored after being fit on."""
  d = config.dataset
  train, test = _parts(config, d.train_split), _parts(config, d.test_split)
  for a in train:
    for b in test:
      if _inside(a, b) or _inside(b, a):
        raise shards.DataError(
            f"config.dataset.test_split={d.test_split!r} and train_split="
            f"{d.train_split!r} overlap ({b!r}, {a!r}): the scores would "
            "count images the probes were fit on; give disjoint splits, or "
            "the same one to hold out a fraction of it for evaluation")
  if sorted(train) != sorted(test) or _role(d.test_split)[1]:
    return None
  base = split_info(config, d.test_split)
  if not base.labelled:
    return None  # nothing is scored on unlabelled images
  split = d.test_split
  # Pretraining on the same split would show the encoder the held-out
  # images (without their labels, but a test image seen in pretraining is
  # no longer unseen): it learns from the rest too.
  pretrains = sorted(_parts(config, d.pretrain_split)) == sorted(test)
  d.train_split, d.test_split = split + REST, split + HELD_OUT
  if pretrains:
    d.pretrain_split = split + REST
  test_info = split_info(config, d.test_split)
  return (f"test_split is train_split ({base.description}): "
          f"{test_info.num_examples} images ({d.held_out_fraction:g} of every"
          f" class, fixed by seed {config.seed}) are held out for evaluation, "
          f"the other {split_info(config, d.train_split).num_examples} "
          f"train {'the encoder, ' if pretrains else ''}the probes and "
          "fine-tunes")
