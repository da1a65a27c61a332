"""Any tfds image-classification dataset: a tiny Imagenette prepared offline
by the real builder, stored as TFRecord (read in sequence) and as ArrayRecord
(read by index)."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import imagenette_fake

from vicreg_haiku.data import class_filter
from vicreg_haiku.data import datasets
from vicreg_haiku.data import decoding
from vicreg_haiku.data import shards
from vicreg_haiku.data import sources
from vicreg_haiku.data import tfds_source
from vicreg_haiku.utils import defaults


@pytest.fixture(scope="module")
def imagenette_dirs(tmp_path_factory):
  """{file format: tfds data_dir}, both from the same download."""
  root = tmp_path_factory.mktemp("imagenette")
  dirs = {}
  for file_format in ("tfrecord", "array_record"):
    dirs[file_format] = str(root / file_format)
    imagenette_fake.prepare(dirs[file_format], str(root / "download"),
                            file_format=file_format)
  return dirs, str(root / "download")


@pytest.fixture(autouse=True)
def fresh_sources():
  for cached in (sources._split, sources._subset, sources._shard,
                 tfds_source._builder):  # pylint: disable=protected-access
    cached.cache_clear()
  yield


def _config(data_dir, **dataset):
  config = defaults.base_config()
  config.dataset.update(dict(dict(
      name=imagenette_fake.NAME, data_dir=data_dir, image_size=16,
      pretrain_split="train", train_split="train", test_split="validation"),
                             **dataset))
  config.pretrain.batch_size = 4
  return config


def _examples(config, split):
  shard = sources.shard(config, split, 0, 1)
  pairs = [shard.read(tf.constant(i, tf.int64)) for i in range(shard.size)]
  return shard, [(decoding.decode_rgb(image).numpy(), int(label))
                 for image, label in pairs]


@pytest.mark.parametrize("file_format", ["tfrecord", "array_record"])
def test_info_and_examples_come_from_the_builder(imagenette_dirs,
                                                 file_format):
  dirs, download = imagenette_dirs
  config = _config(dirs[file_format])
  info = sources.split_info(config, "validation")
  assert info.num_examples == 12 and info.image_shape is None
  assert len(info.class_names) == 10  # Imagenette's ten, from the builder
  assert datasets.num_classes(config) == 10
  shard, examples = _examples(config, "validation")
  assert not shard.decoded  # variable sizes: encoded bytes, decoded per use
  expected = set()
  for path in sorted(__import__("glob").glob(
      f"{download}/imagenette2-160/val/*/*.JPEG")):
    wnid = path.split("/")[-2]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    expected.add((pixels.tobytes(), info.class_names.index(wnid)))
  assert {(image.tobytes(), label) for image, label in examples} == expected


def test_both_file_formats_give_the_same_batches(imagenette_dirs):
  dirs, _ = imagenette_dirs
  batches = {}
  for file_format, data_dir in dirs.items():
    sources._shard.cache_clear()  # pylint: disable=protected-access
    sources._subset.cache_clear()  # pylint: disable=protected-access
    config = _config(data_dir)
    batches[file_format] = (
        next(datasets.pretrain_batches(config, start_step=2)),
        next(datasets.eval_batches(config, "validation", batch_size=4)))
  for a, b in zip(batches["tfrecord"], batches["array_record"]):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_class_filter_over_a_tfds_dataset(imagenette_dirs):
  dirs, _ = imagenette_dirs
  kept = imagenette_fake.CLASSES[1:]
  for data_dir in dirs.values():
    config = _config(data_dir, classes=",".join(kept))
    info = sources.split_info(config, "train")
    assert info.class_names == tuple(kept) and info.num_examples == 8
    _, examples = _examples(config, "train")
    assert sorted(l for _, l in examples) == [0] * 4 + [1] * 4
    for cached in (sources._split, sources._subset, sources._shard,
                   tfds_source._builder):  # pylint: disable=protected-access
      cached.cache_clear()


def test_tfrecord_too_large_for_memory_is_refused(imagenette_dirs):
  dirs, _ = imagenette_dirs
  config = _config(dirs["tfrecord"], in_memory_max_gb=1e-6)
  with pytest.raises(shards.DataError,
                     match="--file_format=array_record") as error:
    next(datasets.pretrain_batches(config))
  assert "\n" not in str(error.value)
  # Stored as ArrayRecord, the same budget streams from disk instead.
  config = _config(dirs["array_record"], in_memory_max_gb=1e-6)
  assert next(datasets.pretrain_batches(config))["view_a"].shape == (
      4, 16, 16, 3)


def test_unknown_names_and_splits_are_refused(imagenette_dirs):
  dirs, _ = imagenette_dirs
  with pytest.raises(shards.DataError, match="no such split"):
    sources.split_info(_config(dirs["tfrecord"]), "test")
  with pytest.raises(shards.DataError, match="neither 'digits', 'folder'"):
    sources.split_info(_config(None, name="imagenet_no_such"), "train")


def test_imagenet2012_is_prepared_from_its_tars(tmp_path):
  """--config.dataset.manual_dir: the real imagenet2012 builder prepares the
  tars (as ArrayRecord, read by index); ImageNet-100 is a filter over it."""
  import imagenet_fake  # pylint: disable=g-import-not-at-top
  in100 = class_filter.class_filter("imagenet100")
  classes = (in100[0], in100[1], "n01443537")  # two of ImageNet-100's
  imagenet_fake.write_tars(str(tmp_path / "manual"), classes)
  config = _config(str(tmp_path / "tfds"), name="imagenet2012",
                   manual_dir=str(tmp_path / "manual"))
  info = sources.split_info(config, "validation")
  assert len(info.class_names) == 1000 and info.num_examples == 6
  shard, examples = _examples(config, "validation")
  assert not shard.decoded  # ArrayRecord: streamed
  # tfds shuffles the records as it writes them: compare the label counts.
  assert sorted(info.class_names[l] for _, l in examples) == sorted(
      imagenet_fake.validation_labels(6))
  assert sources.split_info(config, "train").num_examples == 6
  sources._split.cache_clear()  # pylint: disable=protected-access
  sources._subset.cache_clear()  # pylint: disable=protected-access
  config.dataset.classes = "imagenet100"
  info = sources.split_info(config, "train")
  assert info.num_examples == 4 and len(info.class_names) == 100
  _, examples = _examples(config, "train")
  expected = sorted(sorted(in100, key=info.class_names.index).index(c)
                    for c in classes[:2] for _ in range(2))
  assert sorted(l for _, l in examples) == expected
  # The labels were read once, into a cache beside the data.
  cached = list((tmp_path / "tfds").rglob("labels-train.npy"))
  assert len(cached) == 1
