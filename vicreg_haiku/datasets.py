"""Deterministic, resumable, multi-host tf.data input pipelines.

Sources: STL10 and CIFAR-10 through tensorflow-datasets, and scikit-learn's
8x8 digits (shipped in the wheel, so the default config runs offline).

Each process decodes its disjoint shard of a split once into uint8 memory (a
tf.Variable, so STL10's 2.8 GB does not hit the 2 GB graph-constant limit) and
feeds example indices through tf.data. The example order of an epoch is a
stateless shuffle keyed by (config.seed, epoch) and every augmentation draw is
keyed by (seed, epoch, example, view), so the batch at step k is a pure
function of (config, k): a pipeline started at step k computes its epoch and
position directly and yields what an uninterrupted run yields at step k.

Batch sizes are global; each process yields batch_size // process_count.
"""

import functools
import math
import os
import socket
from typing import Iterator, Optional, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vicreg_haiku import augmentations

# TF only feeds the host; the accelerators belong to JAX.
tf.config.set_visible_devices([], "GPU")

Config = ml_collections.ConfigDict
Batch = dict[str, np.ndarray]

_NUM_CLASSES = {"stl10": 10, "cifar10": 10, "digits": 10}
# Where tfds downloads each dataset from: probed before a download is tried.
_DOWNLOAD_HOSTS = {"stl10": ("ai.stanford.edu", 80),
                   "cifar10": ("www.cs.toronto.edu", 443)}
_PROBE_TIMEOUT_S = 3.0
_DIGITS_TEST_FRACTION = 0.3
_DIGITS_SPLIT_SEED = 0
# Examples per call of the batched half of a pipeline (see _batched).
_FINISH_CHUNK = 16
# Stream ids keep the draws of different uses of config.seed apart.
_SHUFFLE, _PRETRAIN, _LABELLED = 0, 1, 2


class DataError(RuntimeError):
  """Data that is missing, unprepared or malformed."""


def num_classes(config: Config) -> int:
  return _NUM_CLASSES[_name(config)]


def _name(config: Config) -> str:
  name = config.dataset.name
  if name not in _NUM_CLASSES:
    raise ValueError(f"Unknown dataset {name!r}; one of {sorted(_NUM_CLASSES)}.")
  return name


# ---------------------------------------------------------------- sources ---


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


def _digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
  parts = split.split("+")
  unknown = [p for p in parts if p not in ("train", "test")]
  if unknown:
    raise ValueError(f"digits has splits 'train' and 'test' (joined with '+'),"
                     f" not {unknown}.")
  arrays = [_digits()[p] for p in parts]
  return (np.concatenate([a for a, _ in arrays]),
          np.concatenate([b for _, b in arrays]))


def _reachable(host: str, port: int, timeout: float = _PROBE_TIMEOUT_S) -> bool:
  try:
    with socket.create_connection((host, port), timeout=timeout):
      return True
  except OSError:
    return False


def _missing_message(name: str, builder: tfds.core.DatasetBuilder) -> str:
  return (f"{name} is not prepared in data_dir {str(builder.data_dir_root)!r} "
          f"(looked for {builder.data_dir}) and "
          f"{_DOWNLOAD_HOSTS[name][0]} is unreachable: run `tfds build {name} "
          f"--data_dir=DIR` on a connected machine, copy DIR here (or to "
          "gs://...) and pass --config.dataset.data_dir=DIR.")


@functools.cache
def _builder(name: str, data_dir: Optional[str]) -> tfds.core.DatasetBuilder:
  """The prepared tfds builder; downloads only when the source answers.

  Left alone, tfds retries an unreachable download for minutes; a quick
  socket probe turns that into an immediate DataError.
  """
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    if not _reachable(*_DOWNLOAD_HOSTS[name]):
      raise DataError(_missing_message(name, builder))
    builder.download_and_prepare()
  return builder


def num_examples(config: Config, split: str) -> int:
  """Global number of examples of a tfds-syntax split, e.g. "unlabelled+train"."""
  name = _name(config)
  if name == "digits":
    return len(_digits_split(split)[1])
  return _builder(name, config.dataset.data_dir).info.splits[split].num_examples


def _shard_bounds(n: int, index: int, count: int) -> tuple[int, int]:
  return n * index // count, n * (index + 1) // count


def _check_images(images: np.ndarray, where: str) -> None:
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise DataError(f"Images from {where} are {images.dtype}{images.shape}; "
                    "the pipeline needs uint8 [N, H, W, 3]: check the source.")


def _read_tfds(builder: tfds.core.DatasetBuilder, split: str, index: int,
               count: int) -> tuple[np.ndarray, np.ndarray]:
  shard = tfds.even_splits(split, n=count, drop_remainder=False)[index]
  n = builder.info.splits[shard].num_examples
  shape = builder.info.features["image"].shape
  images = np.empty((n,) + tuple(shape), np.uint8)
  labels = np.empty((n,), np.int32)
  ds = builder.as_dataset(split=shard, shuffle_files=False, batch_size=1024)
  offset = 0
  for batch in tfds.as_numpy(ds.prefetch(2)):
    _check_images(batch["image"], f"{builder.name}[{split}]")
    end = offset + len(batch["label"])
    images[offset:end], labels[offset:end] = batch["image"], batch["label"]
    offset = end
  if offset != n:
    raise DataError(f"{builder.name}[{split}] shard {index}/{count} held "
                    f"{offset} examples, its metadata says {n}: re-prepare it.")
  return images, labels


@functools.cache
def _source(name: str, data_dir: Optional[str], split: str, index: int,
            count: int) -> tuple[tf.Variable, np.ndarray]:
  """This process's shard, decoded once: (uint8 images variable, labels)."""
  if name == "digits":
    images, labels = _digits_split(split)
    lo, hi = _shard_bounds(len(labels), index, count)
    images, labels = images[lo:hi], labels[lo:hi]
  else:
    images, labels = _read_tfds(_builder(name, data_dir), split, index, count)
  _check_images(images, f"{name}[{split}]")
  with tf.device("/cpu:0"):
    return tf.Variable(images, trainable=False), labels


def _local_source(config: Config, split: str, index: int, count: int):
  return _source(_name(config), config.dataset.data_dir, split, index, count)


# --------------------------------------------------------------- pipeline ---


def _processes(index: Optional[int], count: Optional[int]) -> tuple[int, int]:
  index = jax.process_index() if index is None else index
  count = jax.process_count() if count is None else count
  return index, count


def _local_batch(batch_size: int, count: int) -> int:
  if batch_size % count:
    raise ValueError(f"Batch size {batch_size} does not split evenly over "
                     f"{count} processes.")
  return batch_size // count


def _steps_per_epoch(n: int, batch_size: int, count: int) -> int:
  # Every shard holds at least n // count examples, so every process agrees.
  steps = (n // count) // _local_batch(batch_size, count)
  if steps == 0:
    raise ValueError(f"Batch size {batch_size} exceeds the {n} examples.")
  return steps


def pretrain_steps_per_epoch(config: Config, *,
                             process_count: Optional[int] = None) -> int:
  """Steps of the global batch config.pretrain.batch_size in one epoch."""
  count = jax.process_count() if process_count is None else process_count
  n = num_examples(config, config.dataset.pretrain_split)
  return _steps_per_epoch(n, config.pretrain.batch_size, count)


def _key(*data: int) -> tf.Tensor:
  """A stateless seed [2] from a sequence of integers (tensors allowed)."""
  seed = tf.constant([0, 0], tf.int64)
  for d in data:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(d, tf.int64))
  return seed


def _example_order(n: int, batch: int, steps_per_epoch: int, start_step: int,
                   seed: int) -> tf.data.Dataset:
  """(epoch, local index) pairs from global step start_step on, forever.

  Each epoch is a stateless shuffle of the shard keyed by (seed, epoch) and
  keeps steps_per_epoch * batch of it (the remainder is dropped).
  """
  start_epoch, start_pos = divmod(start_step, steps_per_epoch)

  def epoch_examples(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=_key(seed, _SHUFFLE, epoch))
    first = tf.where(epoch == start_epoch, start_pos * batch, 0)
    order = order[first:steps_per_epoch * batch]
    return tf.data.Dataset.from_tensor_slices(
        (tf.fill(tf.shape(order), epoch), order))

  epochs = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max)
  return epochs.flat_map(epoch_examples)


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True  # Resume and multi-host need a fixed order.
  # Parallelism comes from the parallel map over examples; threads inside
  # each small op would only contend with it.
  options.threading.private_threadpool_size = os.cpu_count() or 1
  options.threading.max_intra_op_parallelism = 1
  return options


def _parallel_map(ds: tf.data.Dataset, fn) -> tf.data.Dataset:
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _recipe(config: Config) -> ml_collections.ConfigDict:
  return config.augmentations[config.pretrain.augmentation]


def _draws(key: Sequence[int], epoch, i, index: int, count: int,
           shape: Sequence[int]) -> tf.Tensor:
  # A global example id, the same whichever process holds the example.
  example = i * count + index
  return augmentations.draw(_key(*key, epoch, example), shape)


def _batched(order: tf.data.Dataset, per_example, per_batch,
             batch: int) -> Iterator[Batch]:
  """per_example(epoch, i) in a parallel map, then per_batch on chunks.

  Per example: the keyed draws and whatever needs per-example shapes (the
  crop and resize); per chunk of a few examples: the static-shape rest,
  where batching pays. Small chunks keep its dozen passes over the pixels
  in the CPU caches (1.7x faster than whole batches of 256), and are then
  joined into batches.
  """
  chunk = math.gcd(batch, _FINISH_CHUNK)
  ds = _parallel_map(order, per_example)
  ds = ds.batch(chunk, drop_remainder=True)
  ds = _parallel_map(ds, per_batch)
  ds = ds.rebatch(batch, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options()).as_numpy_iterator()


def pretrain_batches(
    config: Config,
    *,
    start_step: int = 0,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
) -> Iterator[Batch]:
  """Two-view batches for the pretraining step; infinite, the i-th element
  is global step start_step + i.

  config.pretrain.augment_on "host": {"view_a", "view_b"}: float32
  [B_local, S, S, 3], ready to train on. "device": the geometric half only,
  {"crops": uint8 [B_local, 2, S, S, 3]} plus each view's photometric
  parameters (augmentations.view_params), which the training step turns
  into views on the accelerator (device_augmentations.two_views).
  """
  index, count = _processes(process_index, process_count)
  images, _ = _local_source(config, config.dataset.pretrain_split, index, count)
  batch = _local_batch(config.pretrain.batch_size, count)
  steps = pretrain_steps_per_epoch(config, process_count=count)
  recipe, size = _recipe(config), config.dataset.image_size

  def draw(epoch, i):
    return _draws((config.seed, _PRETRAIN), epoch, i, index, count, [2])

  def per_example(epoch, i):
    u = draw(epoch, i)
    return augmentations.crop_views(tf.gather(images, i), u, recipe, size), u

  def per_batch(crops, u):
    if config.pretrain.augment_on == "device":
      return dict(augmentations.view_params(u, recipe), crops=crops)
    view_a, view_b = augmentations.finish_views(crops, u, recipe)
    return {"view_a": view_a, "view_b": view_b}

  order = _example_order(images.shape[0], batch, steps, start_step,
                         config.seed)
  return _batched(order, per_example, per_batch, batch)


def labelled_batches(
    config: Config,
    split: str,
    *,
    batch_size: int,
    start_step: int = 0,
    augment: bool,
    crop_scale: Sequence[float] = (0.08, 1.0),
    seed_offset: int = 0,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
) -> Iterator[Batch]:
  """Training batches {"image": float32 [b, S, S, 3], "label": int32 [b]}.

  Infinite, b = batch_size // process_count. With `augment`, a random resized
  crop (crop_scale, ratio 3/4..4/3) and the recipe's flip; else a resize.
  A pure function of (config, seed_offset, step), like pretrain_batches.
  """
  index, count = _processes(process_index, process_count)
  images, labels = _local_source(config, split, index, count)
  labels = tf.constant(labels)
  batch = _local_batch(batch_size, count)
  steps = _steps_per_epoch(num_examples(config, split), batch_size, count)
  recipe, size = _recipe(config), config.dataset.image_size

  def draw(epoch, i):
    return _draws((config.seed, _LABELLED, seed_offset), epoch, i, index,
                  count, [])

  def per_example(epoch, i):
    x = tf.gather(images, i)
    if augment:
      x = augmentations.crop_view(x, draw(epoch, i), size, crop_scale,
                                  recipe.crop_ratio, recipe.interpolation,
                                  recipe.flip_prob)
    return x, i

  def per_batch(x, i):
    if not augment:
      x = augmentations.resize(x, size, recipe.interpolation)
    return {"image": augmentations.normalize(x, recipe.mean, recipe.std),
            "label": tf.gather(labels, i)}

  order = _example_order(images.shape[0], batch, steps, start_step,
                         config.seed + seed_offset)
  return _batched(order, per_example, per_batch, batch)


def eval_batches(
    config: Config,
    split: str,
    *,
    batch_size: int,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
) -> Iterator[Batch]:
  """One pass {"image", "label", "mask"}: each example once over processes.

  Resize only, no randomness. Every process yields the same number of
  batches (collectives need that); padding examples have mask False.
  """
  index, count = _processes(process_index, process_count)
  images, labels = _local_source(config, split, index, count)
  labels = tf.constant(labels)
  batch = _local_batch(batch_size, count)
  largest_shard = -(-num_examples(config, split) // count)
  padded = math.ceil(largest_shard / batch) * batch
  n = images.shape[0]
  recipe, size = _recipe(config), config.dataset.image_size

  def apply(i):
    mask = i < n
    j = tf.minimum(i, n - 1)
    x = augmentations.resize(tf.gather(images, j), size, recipe.interpolation)
    return {"image": augmentations.normalize(x, recipe.mean, recipe.std),
            "label": tf.where(mask, tf.gather(labels, j), 0),
            "mask": mask}

  ds = tf.data.Dataset.range(padded).batch(batch)
  ds = _parallel_map(ds, apply).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options()).as_numpy_iterator()
