"""Any tfds image-classification dataset: a tiny Imagenette prepared offline
by the real builder, stored as TFRecord (read in sequence) and as ArrayRecord
(read by index)."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import imagenette_fake
from vicreg_haiku import datasets
from vicreg_haiku import decoding
from vicreg_haiku import defaults
from vicreg_haiku import sources


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
  for cached in (sources._split, sources._shard, sources._builder):  # pylint: disable=protected-access
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
    for cached in (sources._split, sources._shard, sources._builder):  # pylint: disable=protected-access
      cached.cache_clear()


def test_tfrecord_too_large_for_memory_is_refused(imagenette_dirs):
  dirs, _ = imagenette_dirs
  config = _config(dirs["tfrecord"], in_memory_max_gb=1e-6)
  with pytest.raises(sources.DataError, match="--file_format=array_record") as error:
    next(datasets.pretrain_batches(config))
  assert "\n" not in str(error.value)
  # Stored as ArrayRecord, the same budget streams from disk instead.
  config = _config(dirs["array_record"], in_memory_max_gb=1e-6)
  assert next(datasets.pretrain_batches(config))["view_a"].shape == (
      4, 16, 16, 3)


def test_unknown_names_and_splits_are_refused(imagenette_dirs):
  dirs, _ = imagenette_dirs
  with pytest.raises(sources.DataError, match="no such split"):
    sources.split_info(_config(dirs["tfrecord"]), "test")
  with pytest.raises(sources.DataError, match="neither 'digits', 'folder'"):
    sources.split_info(_config(None, name="imagenet_no_such"), "train")
