"""The tensorflow-datasets source: any tfds image-classification dataset."""

import functools
import io
import os
import socket
import urllib.parse
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vicreg_haiku.data import class_filter
from vicreg_haiku.data import shards
from vicreg_haiku.utils import writers

_PROBE_TIMEOUT_S = 3.0
_TFDS_INDEX_DIR = "vicreg_haiku_index"


def _reachable(host: str, port: int, timeout: float = _PROBE_TIMEOUT_S) -> bool:
  try:
    with socket.create_connection((host, port), timeout=timeout):
      return True
  except OSError:
    return False


# Manual-download datasets that still download something: imagenet2012_subset
# fetches SimCLR's lists of images (1percent.txt, 10percent.txt) from GitHub.
_LIST_HOSTS = {"imagenet2012_subset": ("raw.githubusercontent.com", 443)}


def _homepage_host(builder: tfds.core.DatasetBuilder) -> tuple[str, int]:
  url = urllib.parse.urlparse(builder.info.homepage or "")
  return url.hostname or "storage.googleapis.com", url.port or (
      80 if url.scheme == "http" else 443)


@functools.cache
def _builder(name: str, data_dir: Optional[str],
             manual_dir: Optional[str]) -> tfds.core.DatasetBuilder:
  """The prepared tfds builder, preparing it first where that can work.

  Left alone, tfds retries an unreachable download for minutes; a quick
  probe of the dataset's host turns that into an immediate DataError. What
  this code prepares is written as ArrayRecord, which reads by index.
  """
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise shards.DataError(
        f"config.dataset.name={name!r} is neither 'digits', 'folder' nor a "
        "tensorflow-datasets dataset (tfds.list_builders() lists them)"
    ) from None
  if builder.is_prepared():
    return builder
  where = (f"{name} is not prepared in data_dir {str(builder.data_dir_root)!r}"
           f" (looked for {builder.data_dir})")
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    if not manual_dir:
      raise shards.DataError(
          f"{where}, and it is prepared from files you download yourself: put"
          f" them in a directory DIR and pass --config.dataset.manual_dir=DIR "
          f"(tfds' instructions: "
          f"{' '.join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())[:200]})")
    list_host = _LIST_HOSTS.get(name.split("/")[0])
    if list_host and not _reachable(*list_host):
      raise shards.DataError(
          f"{where}; it is made from the files in manual_dir plus a list "
          f"downloaded from {list_host[0]}, which is unreachable: run `tfds "
          f"build {name} --data_dir=DIR --manual_dir=TARS` on a connected "
          "machine, copy DIR here and pass --config.dataset.data_dir=DIR")
    config = tfds.download.DownloadConfig(manual_dir=manual_dir,
                                          try_download_gcs=False)
  else:
    host = _homepage_host(builder)
    if not _reachable(*host):
      raise shards.DataError(
          f"{where} and {host[0]} is unreachable: run `tfds build {name} "
          f"--data_dir=DIR` on a connected machine, copy DIR here (or to "
          "gs://...) and pass --config.dataset.data_dir=DIR.")
    config = tfds.download.DownloadConfig()
  builder.download_and_prepare(download_config=config)
  return builder


def _tfds_keys(builder: tfds.core.DatasetBuilder) -> tuple[str, str]:
  keys = builder.info.supervised_keys or ("image", "label")
  features = builder.info.features
  if (not isinstance(keys, tuple) or len(keys) != 2
      or keys[0] not in features
      or not isinstance(features[keys[0]], tfds.features.Image)):
    raise shards.DataError(
        f"tfds dataset {builder.name} has no (image, label) pair "
        f"of features (supervised keys {keys}): not an image "
        "classification dataset")
  return keys


def _is_random_access(builder: tfds.core.DatasetBuilder) -> bool:
  """Whether the dataset is (also) stored as ArrayRecord."""
  return (tfds.core.FileFormat.ARRAY_RECORD
          in builder.info.available_file_formats())


def _parse(builder, image_key: str, label_key: str, labelled: bool,
           decode: bool):
  """Serialized example -> (image: decoded uint8 or encoded bytes, label)."""
  decoders = None if decode else {image_key: tfds.decode.SkipDecoding()}

  def parse(serialized):
    example = builder.info.features.deserialize_example(serialized,
                                                        decoders=decoders)
    label = (tf.cast(example[label_key], tf.int32) if labelled
             else tf.constant(-1, tf.int32))
    return example[image_key], label

  return parse


def _record_reader(builder, split: str) -> Callable[[tf.Tensor], tf.Tensor]:
  """Position in `split` -> its serialized record, from ArrayRecord files."""
  source = builder.as_data_source(
      split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)

  def read(position):
    return tf.numpy_function(lambda p: source[int(p)], [position], tf.string,
                             stateful=False)

  return read


def _tfds_labels(builder, split: str, parse) -> np.ndarray:
  """Every example's label (for the class filter), cached beside the data:
  this reads the whole split once (ImageNet: ~140 GB)."""
  path = os.path.join(builder.data_dir, _TFDS_INDEX_DIR,
                      f"labels-{split.replace('/', '_')}.npy")
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path, "rb") as f:
      return np.load(io.BytesIO(f.read()))
  writers.console(f"data: reading the labels of {builder.name}[{split}] "
                  "once, for the class filter ...")
  if _is_random_access(builder):
    read = _record_reader(builder, split)
    n = builder.info.splits[split].num_examples
    ds = tf.data.Dataset.range(n).map(lambda p: parse(read(p))[1],
                                      num_parallel_calls=tf.data.AUTOTUNE)
  else:
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={k: tfds.decode.SkipDecoding()
                                      for k in builder.info.features.keys()
                                      if isinstance(builder.info.features[k],
                                                    tfds.features.Image)})
    ds = ds.map(lambda ex: tf.cast(ex[_tfds_keys(builder)[1]], tf.int32))
  labels = np.fromiter(ds.batch(4096).unbatch().as_numpy_iterator(), np.int32)
  buffer = io.BytesIO()
  np.save(buffer, labels)
  try:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
      f.write(buffer.getvalue())
  except (OSError, tf.errors.OpError):
    pass  # a read-only data_dir: the labels are read again next run
  return labels


def open_split(key: shards.SourceKey, split: str) -> shards.Split:
  """The tfds split `split` (names joined by "+")."""
  builder = _builder(key.name, key.data_dir, key.manual_dir)
  image_key, label_key = _tfds_keys(builder)
  description = f"{key.name}[{split}]"
  try:
    stats = builder.info.splits[split]
  except (KeyError, ValueError) as error:
    raise shards.DataError(
        f"{description}: no such split ({error}); the dataset has "
        f"{sorted(builder.info.splits.keys())} (tfds split syntax, "
        "'+' joins)") from None
  label_feature = builder.info.features[label_key]
  class_names = (tuple(label_feature.names)
                 if isinstance(label_feature, tfds.features.ClassLabel)
                 else None)
  image_shape = tuple(builder.info.features[image_key].shape[:2])
  shape = image_shape if None not in image_shape else None
  parse = functools.partial(_parse, builder, image_key, label_key,
                            class_names is not None)
  positions, relabel = np.arange(stats.num_examples), None
  if key.classes:
    if class_names is None:
      raise shards.DataError(f"config.dataset.classes filters classes, but "
                             f"{description} has no class labels")
    relabel = class_filter.relabelling(class_names, key.classes, description)
    labels = _tfds_labels(builder, split, parse(decode=False))
    positions = np.flatnonzero(relabel[labels] >= 0)
    class_names = tuple(sorted(key.classes, key=class_names.index))
  info = shards.SplitInfo(description, len(positions), class_names, shape)
  bytes_per_example = int(stats.num_bytes) / max(stats.num_examples, 1)

  def labels() -> np.ndarray:
    every = _tfds_labels(builder, split, parse(decode=False))[positions]
    return every if relabel is None else relabel[every]

  def make_shard(index, count, examples=None):
    ids = positions[shards.contiguous_piece(examples, len(positions), index,
                                            count)]
    whole_split = relabel is None and examples is None
    decoded_bytes = len(ids) * (shape[0] * shape[1] * 3 if shape else np.inf)
    in_memory = decoded_bytes <= key.in_memory_max_bytes
    if _is_random_access(builder):
      record, read_encoded = _record_reader(builder, split), parse(decode=False)
      table = tf.constant(ids, tf.int64)

      def read(i):
        image, label = read_encoded(record(tf.gather(table, i)))
        return image, _relabelled(label, relabel)

      if in_memory:
        return shards.Shard(info, len(ids), True,
                            shards.decode_into_memory(read, len(ids), shape),
                            ids)
      return shards.Shard(info, len(ids), False, read, ids)
    encoded_bytes = len(ids) * bytes_per_example
    if not in_memory and encoded_bytes > key.in_memory_max_bytes:
      raise shards.DataError(
          f"{description} is stored as TFRecord, which reads only in "
          f"sequence, and this process's share ({encoded_bytes / 2**30:.1f} "
          "GiB encoded) exceeds config.dataset.in_memory_max_gb="
          f"{key.in_memory_max_bytes / 2**30:g}: write it as "
          f"ArrayRecord (random access) once: `tfds build {builder.name} "
          f"--data_dir=NEW_DIR --file_format=array_record` (imagenet2012: "
          "with --manual_dir=DIR_OF_TARS), then --config.dataset.data_dir="
          "NEW_DIR; or raise in_memory_max_gb")
    read_split = functools.partial(_read_sequential, builder,
                                   image_key=image_key, label_key=label_key,
                                   decode=in_memory,
                                   labelled=info.labelled)
    if whole_split:
      # tfds' own even split, read in sequence; ids are unique over processes.
      images, labels = read_split(tfds.even_splits(split, n=count)[index])
      ids = np.arange(len(labels)) * count + index
    else:  # the whole split read, the examples kept
      images, labels = read_split(split)
      images, labels = images[ids], labels[ids]
      if relabel is not None:
        labels = relabel[labels]
    if in_memory:
      shards.check_images(images, description)
    return shards.Shard(info, len(ids), in_memory,
                        shards.in_memory_read(images, labels), ids)

  return shards.Split(info, make_shard, labels)


def _relabelled(label: tf.Tensor, relabel: Optional[np.ndarray]) -> tf.Tensor:
  if relabel is None:
    return label
  return tf.gather(tf.constant(relabel), label)


def _read_sequential(builder, split, *, image_key: str, label_key: str,
                     decode: bool, labelled: bool
                     ) -> tuple[np.ndarray, np.ndarray]:
  """A TFRecord split read in order: (decoded uint8 images, or their
  encoded bytes; int32 labels, -1 where unlabelled)."""
  decoders = None if decode else {image_key: tfds.decode.SkipDecoding()}
  ds = builder.as_dataset(split=split, shuffle_files=False, batch_size=1024,
                          decoders=decoders)
  images, labels = [], []
  for batch in tfds.as_numpy(ds.prefetch(2)):
    images.append(batch[image_key])
    labels.append(batch[label_key] if labelled
                  else np.full(len(batch[image_key]), -1))
  expected = builder.info.splits[split].num_examples
  found = sum(len(l) for l in labels)
  if found != expected:
    raise shards.DataError(
        f"{builder.name}[{split}] held {found} examples, its "
        f"metadata says {expected}: re-prepare it.")
  return np.concatenate(images), np.concatenate(labels).astype(np.int32)
