"""Deterministic, resumable, multi-host tf.data input pipelines.

Where examples come from (digits, folders, tfds datasets) is sources.py; how
they are augmented is augmentations.py; this module orders and batches them.
Each process reads its disjoint shard of a split by example index. The
example order of an epoch is a stateless shuffle keyed by (config.seed,
epoch) and every augmentation draw is keyed by (seed, epoch, example, view),
so the batch at step k is a pure function of (config, k): a pipeline started
at step k computes its epoch and position directly and yields what an
uninterrupted run yields at step k.

Batch sizes are global; each process yields batch_size // process_count.
"""

import math
import os
from typing import Iterator, NamedTuple, Optional, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from vicreg_haiku.data import augmentations
from vicreg_haiku.data import canvas
from vicreg_haiku.data import decoding
from vicreg_haiku.data import device_augmentations
from vicreg_haiku.data import photometric
from vicreg_haiku.data import shards
from vicreg_haiku.data import sources
from vicreg_haiku.utils import view_sizes
from vicreg_haiku.utils import writers

Config = ml_collections.ConfigDict
Batch = dict[str, np.ndarray]
DataError = shards.DataError

# Examples per call of the batched half of a pipeline (see _batched).
_FINISH_CHUNK = 16
# Stream ids keep the draws of different uses of config.seed apart.
_SHUFFLE, _PRETRAIN, _LABELLED, _LOCAL_VIEWS = 0, 1, 2, 3


def num_classes(config: Config) -> int:
  return sources.num_classes(config)


def labels_missing(config: Config) -> Optional[str]:
  """Why the train and test splits cannot be used for label-based phases
  (probes, fine-tuning, the kNN monitor), or None when they can."""
  infos = {key: sources.split_info(config, config.dataset[key])
           for key in ("train_split", "test_split")}
  for key, info in infos.items():
    if not info.labelled:
      return (f"{info.description} (config.dataset.{key}) is unlabelled "
              f"(images directly in it): point --config.dataset.{key} at a "
              "folder of class subdirectories (SPLIT/<class>/<image>)")
  train, test = infos["train_split"], infos["test_split"]
  if train.class_names != test.class_names:
    extra = sorted(set(test.class_names) ^ set(train.class_names))[:5]
    return (f"{test.description} has other classes than "
            f"{train.description} (e.g. {', '.join(extra) or 'their order'}):"
            " an evaluation split needs the train split's classes")
  return None


def num_examples(config: Config, split: str,
                 label_fraction: float = 1.0) -> int:
  """Global number of examples of a split, e.g. "unlabelled+train" (of its
  labelled subset, with label_fraction < 1)."""
  return sources.split_info(config, split, label_fraction).num_examples


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


def _draws(key: Sequence[int], epoch, example, shape: Sequence[int]
           ) -> tf.Tensor:
  """An example's uniforms, keyed by its global id in the split: the same
  whichever process holds it."""
  return augmentations.draw(_key(*key, epoch, example), shape)


def _global_ids(shard: shards.Shard) -> tf.Tensor:
  return tf.constant(shard.global_ids, tf.int64)


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
  return _finished(ds.rebatch(batch, drop_remainder=True))


def _finished(ds: tf.data.Dataset) -> Iterator[Batch]:
  return ds.prefetch(tf.data.AUTOTUNE).with_options(
      _options()).as_numpy_iterator()


class _ViewKind(NamedTuple):
  """The global views of an example, or its local ones (multi-crop)."""
  stream: int  # of their draws
  count: int
  size: int
  scale: Sequence[float]
  local: bool


def _view_kinds(config: Config) -> list[_ViewKind]:
  """The two global views and, with config.pretrain.local_views, the local
  ones. Each kind draws from its own keyed stream, so the global views are
  the same with or without local views."""
  kinds = [_ViewKind(_PRETRAIN, 2, config.dataset.image_size,
                     _recipe(config).crop_scale, False)]
  if config.pretrain.local_views:
    kinds.append(_ViewKind(_LOCAL_VIEWS, config.pretrain.local_views,
                           view_sizes.local_size(config),
                           config.pretrain.local_crop_scale, True))
  return kinds


def pretrain_batches(
    config: Config,
    *,
    start_step: int = 0,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
) -> Iterator[Batch]:
  """Two-view batches for the pretraining step; infinite, the i-th element
  is global step start_step + i.

  config.pretrain.augment_on (device_augmentations.resolve: "auto" picks by
  JAX's backend) "host": {"view_a", "view_b"}: float32
  [B_local, S, S, 3], ready to train on, and with L =
  config.pretrain.local_views > 0 "local_views": float32
  [B_local, L, s, s, 3] (s: view_sizes.local_size). "device": the decoded
  images, {"canvas": uint8 [B_local, C, C, 3]}, each view's crop as
  Pillow's resize coefficients (canvas.view_geometry) and its photometric
  parameters (photometric.view_params), each [B_local, 2, ...], which the
  training step turns into views on the accelerator
  (device_augmentations.two_views); with L > 0 the same of the local views
  under keys prefixed "local_", each [B_local, L, ...]
  (device_augmentations.local_views).
  """
  index, count = _processes(process_index, process_count)
  shard = sources.shard(config, config.dataset.pretrain_split, index, count)
  batch = _local_batch(config.pretrain.batch_size, count)
  steps = pretrain_steps_per_epoch(config, process_count=count)
  recipe, kinds = _recipe(config), _view_kinds(config)
  ids = _global_ids(shard)
  order = _example_order(shard.size, batch, steps, start_step, config.seed)

  def draws(epoch, i):
    return tuple(_draws((config.seed, kind.stream), epoch, tf.gather(ids, i),
                        [kind.count]) for kind in kinds)

  if device_augmentations.resolve(config.pretrain.augment_on) == "device":
    side = canvas.canvas_side(config, shard.info)
    writers.console(canvas.describe(config, shard.info))

    def fit(epoch, i):
      image, _ = shard.read(i)
      return (*canvas.fit_canvas(image, side, recipe.interpolation,
                                 encoded=not shard.decoded), draws(epoch, i))

    def device_batch(images, original, fitted, u):
      out = {"canvas": images}
      for kind, kind_u in zip(kinds, u):
        prefix = device_augmentations.LOCAL_PREFIX if kind.local else ""
        views = dict(photometric.view_params(kind_u, recipe, local=kind.local),
                     **canvas.view_geometry(kind_u, original, fitted, recipe,
                                            kind.size, side, kind.scale))
        out.update({prefix + key: x for key, x in views.items()})
      return out

    # Whole batches at once: the per-batch work is small, and each copy of
    # the canvases (~200 MB a batch of 256 at 500 px) costs.
    ds = _parallel_map(order, fit).padded_batch(
        batch, padded_shapes=([side, side, 3], [2], [2],
                              tuple([kind.count, None] for kind in kinds)),
        drop_remainder=True)
    return _finished(_parallel_map(ds, device_batch))

  def per_example(epoch, i):
    u = draws(epoch, i)
    image, _ = shard.read(i)
    crops = augmentations.crop_view_sets(
        image, [augmentations.ViewSet(kind_u, kind.size, kind.scale)
                for kind, kind_u in zip(kinds, u)],
        recipe, encoded=not shard.decoded)
    return tuple(crops), u

  def per_batch(crops, u):
    view_a, view_b = photometric.finish_views(crops[0], u[0], recipe)
    out = {"view_a": view_a, "view_b": view_b}
    if len(kinds) > 1:
      out["local_views"] = photometric.finish_local_views(crops[1], u[1],
                                                          recipe)
    return out

  return _batched(order, per_example, per_batch, batch)


def _needs_labels(shard: shards.Shard, what: str) -> None:
  if not shard.info.labelled:
    raise DataError(f"{what} needs labels, but {shard.info.description} is "
                    "unlabelled (images directly in it): point the split at "
                    "a folder of class subdirectories")


def labelled_batches(
    config: Config,
    split: str,
    *,
    batch_size: int,
    start_step: int = 0,
    augment: bool,
    crop_scale: Sequence[float] = (0.08, 1.0),
    interpolation: Optional[str] = None,
    flip_prob: Optional[float] = None,
    label_fraction: float = 1.0,
    seed_offset: int = 0,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
) -> Iterator[Batch]:
  """Training batches {"image": float32 [b, S, S, 3], "label": int32 [b]}.

  Infinite, b = batch_size // process_count. With `augment`, a random resized
  crop (crop_scale, ratio 3/4..4/3, `interpolation`) and a flip with
  `flip_prob` (None: the recipe's); else the evaluation transform. With
  label_fraction < 1, of that fraction of every class's examples (a fixed
  pick per config.seed: sources.shard). A pure function of (config,
  seed_offset, step), like pretrain_batches.
  """
  index, count = _processes(process_index, process_count)
  shard = sources.shard(config, split, index, count, label_fraction)
  _needs_labels(shard, "training a classifier")
  batch = _local_batch(batch_size, count)
  steps = _steps_per_epoch(shard.info.num_examples, batch_size, count)
  recipe, size = _recipe(config), config.dataset.image_size
  interpolation = interpolation or recipe.interpolation
  flip_prob = recipe.flip_prob if flip_prob is None else flip_prob
  ids = _global_ids(shard)

  def per_example(epoch, i):
    image, label = shard.read(i)
    if augment:
      u = _draws((config.seed, _LABELLED, seed_offset), epoch,
                 tf.gather(ids, i), [])
      x = augmentations.crop_view(image, u, size, crop_scale,
                                  recipe.crop_ratio, interpolation,
                                  flip_prob, encoded=not shard.decoded)
    else:
      x = _eval_view(config, shard, image)
    return x, label

  def per_batch(x, label):
    return {
        "image": photometric.normalize(x, recipe.mean, recipe.std),
        "label": label
    }

  order = _example_order(shard.size, batch, steps, start_step,
                         config.seed + seed_offset)
  return _batched(order, per_example, per_batch, batch)


def _eval_view(config: Config, shard: shards.Shard, image) -> tf.Tensor:
  return augmentations.eval_view(
      image, config.dataset.image_size, _recipe(config).interpolation,
      shard.info.image_shape, encoded=not shard.decoded)


def eval_batches(
    config: Config,
    split: str,
    *,
    batch_size: int,
    examples: Optional[np.ndarray] = None,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
) -> Iterator[Batch]:
  """One pass {"image", "label", "mask", "index"}: each example once over
  processes, in the shard's order; "index" is the example's position in
  this process's shard.

  The evaluation transform (augmentations.eval_view), no randomness. Every
  process yields the same number of batches (collectives need that);
  padding examples have mask False. Labels are -1 on an unlabelled split.
  `examples` (sorted positions in the shard; with one process, in the
  split): only these, e.g. the rest of an interrupted pass.
  """
  index, count = _processes(process_index, process_count)
  shard = sources.shard(config, split, index, count)
  batch = _local_batch(batch_size, count)
  if examples is None:
    largest_shard = -(-shard.info.num_examples // count)
    examples = np.arange(shard.size)
  elif count > 1:
    raise ValueError("a pass over chosen examples runs on one process")
  else:
    largest_shard = len(examples)
  padded = math.ceil(largest_shard / batch) * batch
  recipe, n = _recipe(config), len(examples)
  positions = tf.constant(np.asarray(examples, np.int64))

  def apply(i):
    mask = i < n
    position = tf.gather(positions, tf.minimum(i, n - 1))
    image, label = shard.read(position)
    x = _eval_view(config, shard, image)
    return {
        "image": photometric.normalize(x, recipe.mean, recipe.std),
        "label": tf.where(mask, label, 0),
        "mask": mask,
        "index": position,
    }

  ds = _parallel_map(tf.data.Dataset.range(padded), apply).batch(batch)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options()).as_numpy_iterator()


def example_names(config: Config, split: str) -> np.ndarray:
  """Where each example of `split` came from, in eval_batches' order on one
  process: folders' file paths, else "<split>[<id>]" (the example's index in
  the source's split)."""
  shard = sources.shard(config, split, 0, 1)
  if shard.names is not None:
    return np.asarray(shard.names, dtype=object)
  return np.array([f"{split}[{i}]" for i in shard.global_ids], dtype=object)


def eval_image(config: Config, path: str,
               split_shape: Optional[tuple[int, int]] = None) -> np.ndarray:
  """One image file through the evaluation transform, normalised: float32
  [S, S, 3], as eval_batches gives the examples of a split whose images
  share `split_shape` (None: of any sizes). Raises DataError for a file
  that is missing or does not decode."""
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise DataError(f"{path}: no such image file")
  try:
    image = decoding.decode_rgb(tf.io.read_file(path))
  except tf.errors.OpError:
    raise DataError(f"{path} does not decode as an image (JPEG, PNG, GIF, "
                    "BMP or WebP): truncated, corrupt or another format?"
                    ) from None
  shape = tuple(int(n) for n in image.shape[:2])
  x = augmentations.eval_view(
      image, config.dataset.image_size, _recipe(config).interpolation,
      shape if shape == split_shape else None)
  recipe = _recipe(config)
  return np.asarray(photometric.normalize(x, recipe.mean, recipe.std))
