"""Pipelines on digits and on tiny STL10 and CIFAR-10 read by the real tfds
builders."""

import importlib.util
import os
import time

import numpy as np
import pytest

import cifar10_fake
import stl10_fake

from vicreg_haiku.data import datasets
from vicreg_haiku.data import shards
from vicreg_haiku.data import sources
from vicreg_haiku.data import tfds_source
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import defaults

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digits_config():
  path = os.path.join(_ROOT, "configs", "digits.py")
  spec = importlib.util.spec_from_file_location("digits_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.dataset.image_size = 12
  config.pretrain.batch_size = 8
  return config


def _stl10_config(data_dir):
  config = defaults.base_config()
  config.dataset.name = "stl10"
  config.dataset.data_dir = data_dir
  config.dataset.image_size = 16
  config.dataset.pretrain_split = "unlabelled+train"
  config.pretrain.batch_size = 8
  return config


def _cifar10_config(data_dir):
  config = defaults.base_config()
  config.dataset.name = "cifar10"
  config.dataset.data_dir = data_dir
  config.dataset.image_size = 32  # The stored size: eval's resize is exact.
  config.dataset.pretrain_split = "train"
  config.pretrain.batch_size = 8
  return config


def _pairs(images, labels):
  # tfds shuffles records when it writes them: compare as sets.
  return {(im.tobytes(), int(l)) for im, l in zip(images, labels)}


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _shard_examples(config, split, index=0, count=1):
  """(uint8 images, labels) of a process's shard, read as the pipeline does."""
  shard = sources.shard(config, split, index, count)
  examples = [shard.read(i) for i in range(shard.size)]
  return (np.stack([image.numpy() for image, _ in examples]),
          np.array([label.numpy() for _, label in examples]))


def test_digits_splits():
  config = _digits_config()
  assert datasets.num_examples(config, "train") == 1257
  assert datasets.num_examples(config, "test") == 540
  assert datasets.num_classes(config) == 10


def test_fake_stl10_is_read_in_the_real_layout(fake_stl10_dir, tmp_path):
  expected = stl10_fake.write_binaries(str(tmp_path))  # same seed, same data
  config = _stl10_config(fake_stl10_dir)
  assert datasets.num_examples(config, "unlabelled+train") == 64
  assert _pairs(*_shard_examples(config, "train")) == _pairs(
      *expected["train"])


def test_fake_cifar10_is_read_in_the_real_layout(fake_cifar10_dir, tmp_path):
  expected = cifar10_fake.write_binaries(str(tmp_path))  # same seed, same data
  config = _cifar10_config(fake_cifar10_dir)
  assert datasets.num_classes(config) == 10
  for split in ("train", "test"):
    assert datasets.num_examples(config, split) == 20
    assert _pairs(*_shard_examples(config, split)) == _pairs(*expected[split])


@pytest.mark.parametrize("source", ["digits", "stl10"])
def test_pretrain_batches(source, fake_stl10_dir):
  config = (_digits_config() if source == "digits"
            else _stl10_config(fake_stl10_dir))
  size = config.dataset.image_size
  steps = datasets.pretrain_steps_per_epoch(config)
  # Determinism, and resume at k (inside and across an epoch boundary).
  reference = _take(datasets.pretrain_batches(config), steps + 2)
  again = _take(datasets.pretrain_batches(config), 2)
  for k in (1, steps - 1, steps + 1):
    resumed = next(datasets.pretrain_batches(config, start_step=k))
    for key in ("view_a", "view_b"):
      np.testing.assert_array_equal(resumed[key], reference[k][key])
  np.testing.assert_array_equal(again[1]["view_a"], reference[1]["view_a"])
  batch = reference[0]
  for key in ("view_a", "view_b"):
    assert batch[key].shape == (8, size, size, 3)
    assert batch[key].dtype == np.float32
    assert np.isfinite(batch[key]).all() and np.abs(batch[key]).max() < 3
  assert not np.allclose(batch["view_a"], batch["view_b"])
  # A new epoch reshuffles and redraws.
  assert not np.allclose(reference[0]["view_a"], reference[steps]["view_a"])


def test_cifar10_pretrain_batches(fake_cifar10_dir):
  # One pipeline only: determinism and resume do not depend on the source
  # and test_pretrain_batches covers them.
  batch = next(datasets.pretrain_batches(_cifar10_config(fake_cifar10_dir)))
  for key in ("view_a", "view_b"):
    assert batch[key].shape == (8, 32, 32, 3)
    assert batch[key].dtype == np.float32
    assert np.isfinite(batch[key]).all() and np.abs(batch[key]).max() < 3
  assert not np.allclose(batch["view_a"], batch["view_b"])


def test_device_augmentation_gives_the_host_views(fake_stl10_dir):
  """augment_on="device": the decoded images on a canvas, each view's
  resize coefficients and parameters; the step's views are the tf.data
  views of the same step."""
  config = _stl10_config(fake_stl10_dir)
  host = _take(datasets.pretrain_batches(config, start_step=3), 2)
  config.pretrain.augment_on = "device"
  device = _take(datasets.pretrain_batches(config, start_step=3), 2)
  for h, d in zip(host, device):
    side = 96  # STL10's images: the canvas holds them whole
    assert d["canvas"].dtype == np.uint8
    assert d["canvas"].shape == (8, side, side, 3)
    views = pretrain_step.views(config, d)
    for key, view in zip(("view_a", "view_b"), views):
      np.testing.assert_allclose(np.asarray(view), h[key], atol=2e-5)


def test_host_shards_are_disjoint_and_cover_the_split(fake_stl10_dir):
  config = _stl10_config(fake_stl10_dir)
  seen = []
  for index in range(3):
    images, _ = _shard_examples(config, "unlabelled+train", index, 3)
    seen += [im.tobytes() for im in images]
  assert len(seen) == len(set(seen)) == 64
  local = next(datasets.pretrain_batches(config, process_index=1,
                                         process_count=2))
  assert local["view_a"].shape == (4, 16, 16, 3)
  assert datasets.pretrain_steps_per_epoch(config, process_count=2) == 8


@pytest.mark.parametrize("count", [1, 3])
def test_eval_covers_every_example_once_with_padding(count):
  config = _digits_config()
  batches = [list(datasets.eval_batches(config, "test", batch_size=12 * count,
                                        process_index=i, process_count=count))
             for i in range(count)]
  assert len({len(b) for b in batches}) == 1  # same number on every process
  images = np.concatenate([b["image"] for bs in batches for b in bs])
  masks = np.concatenate([b["mask"] for bs in batches for b in bs])
  labels = np.concatenate([b["label"] for bs in batches for b in bs])
  assert masks.sum() == 540 and masks.dtype == bool
  assert labels.dtype == np.int32 and images.shape[1:] == (12, 12, 3)
  assert len(np.unique(images[masks].reshape(540, -1), axis=0)) > 530
  assert np.bincount(labels[masks]).min() >= 50  # stratified: all classes
  # Deterministic: a second pass is identical.
  again = list(datasets.eval_batches(config, "test", batch_size=12 * count,
                                     process_index=0, process_count=count))
  np.testing.assert_array_equal(again[0]["image"], batches[0][0]["image"])


@pytest.mark.parametrize("count", [1, 2])
def test_cifar10_eval_gives_every_test_image_once(count, fake_cifar10_dir,
                                                  tmp_path):
  expected = cifar10_fake.write_binaries(str(tmp_path))  # same seed, same data
  config = _cifar10_config(fake_cifar10_dir)
  batches = [b for i in range(count)  # pylint: disable=g-complex-comprehension
             for b in datasets.eval_batches(config, "test", batch_size=8,
                                            process_index=i,
                                            process_count=count)]
  masks = np.concatenate([b["mask"] for b in batches])
  images = np.concatenate([b["image"] for b in batches])[masks]
  labels = np.concatenate([b["label"] for b in batches])[masks]
  assert masks.sum() == 20
  # At the stored size the resize is the identity: undoing the normalisation
  # gives back the stored bytes.
  recipe = config.augmentations[config.pretrain.augmentation]
  pixels = (images * np.array(recipe.std) + np.array(recipe.mean)) * 255
  assert np.abs(pixels - np.round(pixels)).max() < 1e-2
  assert _pairs(np.round(pixels).astype(np.uint8), labels) == _pairs(
      *expected["test"])


@pytest.mark.parametrize("augment", [True, False])
def test_labelled_batches(augment, fake_stl10_dir):
  config = _stl10_config(fake_stl10_dir)
  it = datasets.labelled_batches(config, "train", batch_size=8,
                                 augment=augment, crop_scale=(0.5, 1.0))
  reference = _take(it, 4)  # 3 steps an epoch: crosses an epoch boundary
  resumed = next(datasets.labelled_batches(
      config, "train", batch_size=8, augment=augment, crop_scale=(0.5, 1.0),
      start_step=3))
  np.testing.assert_array_equal(resumed["image"], reference[3]["image"])
  np.testing.assert_array_equal(resumed["label"], reference[3]["label"])
  batch = reference[0]
  assert batch["image"].shape == (8, 16, 16, 3)
  assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.int32
  assert set(np.concatenate([b["label"] for b in reference[:3]])) <= set(
      range(10))


def test_missing_stl10_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
  # No network in tests: the download probe says the source is unreachable.
  monkeypatch.setattr(tfds_source, "_reachable", lambda *args, **kwargs: False)
  config = _stl10_config(str(tmp_path / "empty"))
  start = time.perf_counter()
  with pytest.raises(datasets.DataError, match="tfds build stl10") as error:
    next(datasets.pretrain_batches(config))
  assert time.perf_counter() - start < 30
  assert str(tmp_path / "empty") in str(error.value)
  assert "not prepared" in str(error.value)


def test_reachable_probe_returns_quickly_on_a_closed_port():
  start = time.perf_counter()
  assert not tfds_source._reachable("127.0.0.1", 9, timeout=2)  # pylint: disable=protected-access
  assert time.perf_counter() - start < 5


def test_bad_images_raise_data_error():
  with pytest.raises(datasets.DataError, match="uint8"):
    shards.check_images(  # pylint: disable=protected-access
        np.zeros((2, 8, 8), np.float32), "somewhere")
