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
import io
import os
import socket
import urllib.parse
from typing import Callable, Optional

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vicreg_haiku import decoding
from vicreg_haiku import folder_index
from vicreg_haiku import writers

# TF only feeds the host; the accelerators belong to JAX.
tf.config.set_visible_devices([], "GPU")

Config = ml_collections.ConfigDict
ReadFn = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]

_DIGITS_TEST_FRACTION = 0.3
_DIGITS_SPLIT_SEED = 0
_PROBE_TIMEOUT_S = 3.0
_BUILTIN_CLASS_LISTS = {"imagenet100": "imagenet100_classes.txt"}
_TFDS_INDEX_DIR = "vicreg_haiku_index"


class DataError(RuntimeError):
  """Data that is missing, unprepared or malformed (one-line message)."""


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """Facts about a whole split, the same on every process."""
  description: str  # for messages, e.g. "folder /data/imagenet/train"
  num_examples: int
  class_names: Optional[tuple[str, ...]]  # None: unlabelled
  image_shape: Optional[tuple[int, int]]  # (H, W) shared by every image

  @property
  def labelled(self) -> bool:
    return self.class_names is not None


@dataclasses.dataclass(frozen=True)
class Shard:
  """This process's examples of a split, read by local index in tf.data.

  read(i) -> (image, label): a uint8 [H, W, 3] image when `decoded`, else a
  scalar string of encoded bytes (decoding.decode_rgb), and an int32 label
  (-1 for an unlabelled split). global_ids[i] is the example's index in the
  whole split: the augmentation draws are keyed by it, so an example's views
  do not depend on how many processes share the split.
  """
  info: SplitInfo
  size: int
  decoded: bool
  read: ReadFn
  global_ids: np.ndarray


# ------------------------------------------------------------- dispatch ---


def split_info(config: Config, split: str,
               label_fraction: float = 1.0) -> SplitInfo:
  """The split's facts; with label_fraction < 1, of its labelled subset."""
  return _subset(_source_key(config), split, label_fraction, config.seed)[0]


def shard(config: Config, split: str, index: int, count: int,
          label_fraction: float = 1.0) -> Shard:
  """This process's shard of `split` (cached: read or decoded once).

  label_fraction < 1: of a fixed random pick (per config.seed) of that
  fraction of every class's examples (at least one each), as the labelled
  set of a semi-supervised fine-tune.
  """
  return _shard(_source_key(config), split, index, count, label_fraction,
                config.seed)


def num_classes(config: Config) -> int:
  """Classes of the labelled data: the train split's, else the source's."""
  info = split_info(config, config.dataset.train_split)
  if info.labelled:
    return len(info.class_names)
  raise DataError(f"{info.description} is unlabelled: there are no classes "
                  "to count; point --config.dataset.train_split at labelled "
                  "images")


@dataclasses.dataclass(frozen=True)
class _SourceKey:
  """The config fields that decide what a split holds (hashable, cached)."""
  name: str
  data_dir: Optional[str]
  manual_dir: Optional[str]
  folder: Optional[str]
  index_dir: Optional[str]
  classes: tuple[str, ...]
  in_memory_max_bytes: float


def _source_key(config: Config) -> _SourceKey:
  d = config.dataset
  return _SourceKey(d.name, d.data_dir, d.manual_dir, d.folder, d.index_dir,
                    class_filter(d.classes), d.in_memory_max_gb * 2**30)


@dataclasses.dataclass(frozen=True)
class _Split:
  """A source's split: its facts, its shards, its labels.

  make_shard(index, count, examples): a process's Shard of the examples
  (indices into the split, sorted; None: all). labels(): every example's
  label, in the split's order (reading them may take a pass over the data).
  """
  info: SplitInfo
  make_shard: Callable[..., Shard]
  labels: Callable[[], np.ndarray]


@functools.cache
def _split(key: _SourceKey, split: str) -> _Split:
  if key.name == "digits":
    return _digits_split(split, key)
  if key.name == "folder":
    return _folder_split(key, split)
  return _tfds_split(key, split)


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
def _subset(key: _SourceKey, split: str, fraction: float, seed: int
            ) -> tuple[SplitInfo, Optional[np.ndarray]]:
  """(info, examples): the split's labelled subset (all: examples None)."""
  base = _split(key, split)
  if fraction >= 1:
    return base.info, None
  if not 0 < fraction:
    raise DataError(f"label_fraction={fraction!r}: a fraction in (0, 1]")
  if not base.info.labelled:
    raise DataError(f"a fraction of the labels of {base.info.description}, "
                    "which is unlabelled: point it at class subdirectories")
  examples = per_class_pick(base.labels(), fraction, seed)
  info = dataclasses.replace(
      base.info, num_examples=len(examples),
      description=f"{base.info.description} ({fraction:g} of its labels)")
  return info, examples


@functools.cache
def _shard(key: _SourceKey, split: str, index: int, count: int,
           fraction: float, seed: int) -> Shard:
  info, examples = _subset(key, split, fraction, seed)
  return dataclasses.replace(
      _split(key, split).make_shard(index, count, examples), info=info)


# ---------------------------------------------------------- class filter ---


def class_filter(classes: Optional[str]) -> tuple[str, ...]:
  """config.dataset.classes -> class names (empty: keep every class).

  "imagenet100" (the ImageNet-100 of CMC and solo-learn, shipped here), a
  file of names (whitespace-separated, "#" starts a comment line), or names
  joined by ",".
  """
  if not classes:
    return ()
  if classes in _BUILTIN_CLASS_LISTS:
    path = os.path.join(os.path.dirname(__file__),
                        _BUILTIN_CLASS_LISTS[classes])
  elif tf.io.gfile.exists(classes):
    path = classes
  else:
    return tuple(name.strip() for name in classes.split(",") if name.strip())
  with tf.io.gfile.GFile(path) as f:
    names = tuple(word for line in f.read().splitlines()
                  if not line.lstrip().startswith("#") for word in line.split())
  if not names:
    raise DataError(f"config.dataset.classes={classes!r}: {path} names no "
                    "classes")
  return names


def _kept(class_names: tuple[str, ...], wanted: tuple[str, ...],
          description: str) -> np.ndarray:
  """old label -> new label (-1: dropped) for the class filter `wanted`."""
  missing = [name for name in wanted if name not in class_names]
  if missing:
    raise DataError(
        f"config.dataset.classes names {len(missing)} class(es) absent from "
        f"{description}: {', '.join(missing[:5])}"
        f"{' ...' if len(missing) > 5 else ''}; fix the list or the split")
  new = {name: i for i, name in enumerate(sorted(wanted, key=class_names.index))}
  return np.array([new.get(name, -1) for name in class_names], np.int32)


# -------------------------------------------------------------- helpers ---


def _shape_of(heights: np.ndarray, widths: np.ndarray
              ) -> Optional[tuple[int, int]]:
  if len(heights) and (heights == heights[0]).all() and (
      widths == widths[0]).all():
    return int(heights[0]), int(widths[0])
  return None


def _contiguous_piece(examples: Optional[np.ndarray], n: int, index: int,
                      count: int) -> np.ndarray:
  """Process `index`'s piece of the examples (all n when None)."""
  examples = np.arange(n) if examples is None else examples
  lo = len(examples) * index // count
  return examples[lo:len(examples) * (index + 1) // count]


def _in_memory_read(images: np.ndarray, labels: np.ndarray) -> ReadFn:
  """Reads from arrays held in host memory: uint8 images or encoded bytes."""
  with tf.device("/cpu:0"):
    # A variable, not a constant: STL10's 2.8 GB would pass the 2 GB limit
    # of a graph's constants.
    images = tf.Variable(images, trainable=False)
  labels = tf.constant(labels, tf.int32)
  return lambda i: (tf.gather(images, i), tf.gather(labels, i))


def _check_images(images: np.ndarray, where: str) -> None:
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise DataError(f"Images from {where} are {images.dtype}{images.shape}; "
                    "the pipeline needs uint8 [N, H, W, 3]: check the source.")


def _decode_all(read: ReadFn, n: int, shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
  """Reads and decodes n examples of one image shape, in parallel, into
  host memory: (uint8 images [n, H, W, 3], int32 labels [n])."""
  images = np.empty((n, *shape, 3), np.uint8)
  labels = np.empty((n,), np.int32)

  def decode(i):
    encoded, label = read(i)
    return decoding.decode_rgb(encoded), label

  ds = tf.data.Dataset.range(n).map(decode,
                                    num_parallel_calls=tf.data.AUTOTUNE)
  offset = 0
  for image_batch, label_batch in ds.batch(256).as_numpy_iterator():
    end = offset + len(label_batch)
    images[offset:end], labels[offset:end] = image_batch, label_batch
    offset = end
  return images, labels


# --------------------------------------------------------------- digits ---


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


def _digits_split(split: str, key: _SourceKey):
  parts = split.split("+")
  unknown = [p for p in parts if p not in ("train", "test")]
  if unknown:
    raise DataError(f"digits has splits 'train' and 'test' (joined with '+'),"
                    f" not {unknown}.")
  images = np.concatenate([_digits()[p][0] for p in parts])
  labels = np.concatenate([_digits()[p][1] for p in parts])
  names = tuple(str(c) for c in range(10))
  if key.classes:
    relabel = _kept(names, key.classes, f"digits[{split}]")
    keep = relabel[labels] >= 0
    images, labels = images[keep], relabel[labels[keep]]
    names = tuple(sorted(key.classes, key=names.index))
  info = SplitInfo(f"digits[{split}]", len(labels), names, images.shape[1:3])

  def make_shard(index, count, examples=None):
    ids = _contiguous_piece(examples, len(labels), index, count)
    return Shard(info, len(ids), True,
                 _in_memory_read(images[ids], labels[ids]), ids)

  return _Split(info, make_shard, lambda: labels)


# --------------------------------------------------------------- folder ---


@functools.cache
def _folder_index(root: str, part: str,
                  index_dir: Optional[str]) -> folder_index.Index:
  try:
    return folder_index.build(root, part, index_dir)
  except folder_index.FolderError as error:
    raise DataError(str(error)) from None


def _folder_split(key: _SourceKey, split: str):
  if not key.folder:
    raise DataError("config.dataset.name='folder' needs "
                    "--config.dataset.folder=ROOT (a local path or gs://...)")
  indexes = [_folder_index(key.folder, part, key.index_dir)
             for part in split.split("+")]
  description = f"folder {os.path.join(key.folder, split)}"
  labelled = [ix for ix in indexes if ix.class_names is not None]
  class_names = None
  labels = [np.full(len(ix), -1, np.int32) for ix in indexes]
  if len(labelled) == len(indexes):
    class_names = indexes[0].class_names
    for ix in indexes[1:]:
      if ix.class_names != class_names:
        raise DataError(f"{ix.directory} has other class directories than "
                        f"{indexes[0].directory}: a '+' split joins folders "
                        "of the same classes")
    labels = [ix.labels for ix in indexes]
  keep = [np.ones(len(ix), bool) for ix in indexes]
  if key.classes:
    if class_names is None:
      raise DataError(
          f"config.dataset.classes filters classes, but {description} is "
          "unlabelled (images directly in it): point the split at class "
          "subdirectories or clear the filter")
    relabel = _kept(class_names, key.classes, description)
    keep = [relabel[l] >= 0 for l in labels]
    labels = [relabel[l[k]] for l, k in zip(labels, keep)]
    class_names = tuple(sorted(key.classes, key=class_names.index))
  paths = np.concatenate([np.array(ix.full_paths(), dtype=object)[k]
                          for ix, k in zip(indexes, keep)])
  labels = np.concatenate(labels)
  heights = np.concatenate([ix.heights[k] for ix, k in zip(indexes, keep)])
  widths = np.concatenate([ix.widths[k] for ix, k in zip(indexes, keep)])
  if not len(paths):
    raise DataError(f"{description} holds no usable images")
  shape = _shape_of(heights, widths)
  info = SplitInfo(description, len(paths), class_names, shape)

  def make_shard(index, count, examples=None):
    ids = (np.arange(len(paths)) if examples is None else examples)[
        index::count]
    local_paths = tf.constant(paths[ids].astype(bytes))
    local_labels = labels[ids]
    decoded_bytes = len(ids) * (shape[0] * shape[1] * 3 if shape else np.inf)
    with tf.device("/cpu:0"):
      path_table = tf.Variable(local_paths, trainable=False)
    label_table = tf.constant(local_labels)

    def read(i):
      return (tf.io.read_file(tf.gather(path_table, i)),
              tf.gather(label_table, i))

    if decoded_bytes <= key.in_memory_max_bytes:
      return Shard(info, len(ids), True,
                   _in_memory_read(*_decode_all(read, len(ids), shape)), ids)
    return Shard(info, len(ids), False, read, ids)

  return _Split(info, make_shard, lambda: labels)


# ----------------------------------------------------------------- tfds ---


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
    raise DataError(
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
      raise DataError(
          f"{where}, and it is prepared from files you download yourself: put"
          f" them in a directory DIR and pass --config.dataset.manual_dir=DIR "
          f"(tfds' instructions: "
          f"{' '.join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())[:200]})")
    list_host = _LIST_HOSTS.get(name.split("/")[0])
    if list_host and not _reachable(*list_host):
      raise DataError(
          f"{where}; it is made from the files in manual_dir plus a list "
          f"downloaded from {list_host[0]}, which is unreachable: run `tfds "
          f"build {name} --data_dir=DIR --manual_dir=TARS` on a connected "
          "machine, copy DIR here and pass --config.dataset.data_dir=DIR")
    config = tfds.download.DownloadConfig(manual_dir=manual_dir,
                                          try_download_gcs=False)
  else:
    host = _homepage_host(builder)
    if not _reachable(*host):
      raise DataError(
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
    raise DataError(f"tfds dataset {builder.name} has no (image, label) pair "
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


def _tfds_split(key: _SourceKey, split: str):
  builder = _builder(key.name, key.data_dir, key.manual_dir)
  image_key, label_key = _tfds_keys(builder)
  description = f"{key.name}[{split}]"
  try:
    stats = builder.info.splits[split]
  except (KeyError, ValueError) as error:
    raise DataError(f"{description}: no such split ({error}); the dataset has "
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
      raise DataError(f"config.dataset.classes filters classes, but "
                      f"{description} has no class labels")
    relabel = _kept(class_names, key.classes, description)
    labels = _tfds_labels(builder, split, parse(decode=False))
    positions = np.flatnonzero(relabel[labels] >= 0)
    class_names = tuple(sorted(key.classes, key=class_names.index))
  info = SplitInfo(description, len(positions), class_names, shape)
  bytes_per_example = int(stats.num_bytes) / max(stats.num_examples, 1)

  def labels() -> np.ndarray:
    every = _tfds_labels(builder, split, parse(decode=False))[positions]
    return every if relabel is None else relabel[every]

  def make_shard(index, count, examples=None):
    ids = positions[_contiguous_piece(examples, len(positions), index, count)]
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
        return Shard(info, len(ids), True,
                     _in_memory_read(*_decode_all(read, len(ids), shape)), ids)
      return Shard(info, len(ids), False, read, ids)
    encoded_bytes = len(ids) * bytes_per_example
    if not in_memory and encoded_bytes > key.in_memory_max_bytes:
      raise DataError(
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
      _check_images(images, description)
    return Shard(info, len(ids), in_memory, _in_memory_read(images, labels),
                 ids)

  return _Split(info, make_shard, labels)


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
    raise DataError(f"{builder.name}[{split}] held {found} examples, its "
                    f"metadata says {expected}: re-prepare it.")
  return np.concatenate(images), np.concatenate(labels).astype(np.int32)
