"""Semi-supervised fine-tuning: a fraction of every class's labels, or the
train split of another tfds dataset (SimCLR's ImageNet subsets)."""

import collections
import os
import types

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn import datasets as sk_datasets
from sklearn import model_selection

import imagenet_fake
from test_config import load_config
from test_runner import tiny

from vicreg_haiku import runner
from vicreg_haiku.data import datasets
from vicreg_haiku.data import tfds_source
from vicreg_haiku.evaluation import classifier
from vicreg_haiku.models import transforms
from vicreg_haiku.training import parallel


@pytest.fixture
def drawn(monkeypatch):
  """The batches each labelled_batches call of the phases yields, by call."""
  calls = []
  real = datasets.labelled_batches

  def recording(*args, **kwargs):
    calls.append([])
    for batch in real(*args, **kwargs):
      calls[-1].append(batch)
      yield batch

  monkeypatch.setattr(datasets, "labelled_batches", recording)
  return calls


def _examples(batches) -> collections.Counter:
  return collections.Counter(
      (image.tobytes(), int(label)) for batch in batches
      for image, label in zip(batch["image"], batch["label"]))


def _digits_train_counts() -> np.ndarray:
  """Examples per class of the digits train split, from scikit-learn (the
  stratified 70/30 split of sources.py, seed 0)."""
  labels = sk_datasets.load_digits().target
  train, _ = model_selection.train_test_split(
      np.arange(len(labels)), test_size=0.3, random_state=0, stratify=labels)
  return np.bincount(labels[train])


def test_a_label_fraction_trains_both_phases_on_one_per_class_pick(
    tmp_path, drawn):
  """label_fraction=0.1 of digits: round(0.1 x n) examples of each class (at
  least one; sources.per_class_pick), 126 in all, so batches of 42 make 3
  steps an epoch. The fine-tune and its baseline see exactly those, the
  examples labelled_batches picks."""
  config = tiny(load_config("digits"))
  per_class = [max(1, round(0.1 * n)) for n in _digits_train_counts()]
  assert sum(per_class) == 126
  for phase in classifier.PHASES:
    config[phase].update(label_fraction=0.1, batch_size=42, augment=False)
  model = transforms.classifier_model(config, 10)
  params, net_state = model.init(transforms.init_key(0, 0),
                                 jnp.zeros((2, 8, 8, 3)),
                                 is_training=True)
  imported = transforms.Weights(params, net_state, "random init")
  mesh = parallel.make_mesh()
  entries = {}
  for phase in classifier.PHASES:
    entries.update(classifier.run(config, str(tmp_path), phase, mesh,
                                  imported))
  for phase in classifier.PHASES:
    assert entries[phase]["labels"] == 126
    assert entries[phase]["steps"] == 3
    assert entries[phase]["label_fraction"] == 0.1
  finetune, supervised = (_examples(calls) for calls in drawn)
  assert sum(finetune.values()) == 126  # one epoch: each example once
  counts = collections.Counter(label for _, label in finetune.elements())
  assert [counts[c] for c in range(10)] == per_class
  assert supervised == finetune
  picked = datasets.labelled_batches(config, "train", batch_size=126,
                                     augment=False, label_fraction=0.1)
  assert _examples([next(picked)]) == finetune


@pytest.mark.parametrize("phase", classifier.PHASES)
def test_a_batch_larger_than_the_labelled_set_is_refused(tmp_path, phase):
  """Before anything is written (a fine-tune even before its encoder is
  looked for)."""
  config = tiny(load_config("digits"))
  config.mode = phase
  config[phase].label_fraction = 0.01  # 1 example of each class: 10
  with pytest.raises(datasets.DataError) as error:
    runner.run(config, str(tmp_path / "run"))
  assert str(error.value) == (
      f"config.{phase}.batch_size=16 exceeds the 10 examples of "
      "digits[train] (0.01 of its labels), which the phase trains on: use a "
      "smaller batch")
  assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
  """ILSVRC tars of 3 classes x 2 images (manual_dir), a tfds data_dir to
  prepare them in, and a 1percent.txt in SimCLR's format (subset_list) that
  keeps 4 of the train images (kept)."""
  root = tmp_path_factory.mktemp("imagenet")
  classes = ("n01440764", "n01443537", "n01484850")
  imagenet_fake.write_tars(str(root / "manual"), classes, per_class=2)
  kept = [f"{classes[0]}_0.JPEG", f"{classes[1]}_1.JPEG",
          f"{classes[2]}_0.JPEG", f"{classes[2]}_1.JPEG"]
  (root / "1percent.txt").write_text("".join(f"{n}\n" for n in kept))
  return types.SimpleNamespace(
      manual_dir=str(root / "manual"), data_dir=str(root / "tfds"),
      kept=kept, subset_list=str(root / "1percent.txt"))


@pytest.fixture
def offline_subset_list(fake_imagenet, monkeypatch):
  """imagenet2012_subset's builder downloads SimCLR's list from GitHub:
  here it gets the fake one."""
  monkeypatch.setattr(tfds.download.DownloadManager, "download",
                      lambda self, url: fake_imagenet.subset_list)
  monkeypatch.setattr(tfds_source, "_reachable", lambda *args, **kwargs: True)


def test_train_dataset_trains_on_the_simclr_subset(fake_imagenet, tmp_path,
                                                   drawn,
                                                   offline_subset_list):
  """supervised.train_dataset=imagenet2012_subset/1pct: prepared by tfds'
  builder from the same tars, the phase trains on the 4 images of the list
  (one step of 4) and is tested on imagenet2012's 6 validation images."""
  del offline_subset_list
  config = tiny(load_config("imagenet"))
  config.precision = "float32"
  config.model.encoder, config.model.stem = "resnet18", "cifar"
  config.dataset.update(dict(data_dir=fake_imagenet.data_dir,
                             manual_dir=fake_imagenet.manual_dir,
                             image_size=8))
  config.mode = "supervised"
  config.supervised.update(epochs=1, batch_size=4,
                           train_dataset="imagenet2012_subset/1pct")
  results = runner.run(config, str(tmp_path))
  entry = results["supervised"]
  assert entry["labels"] == 4 and entry["steps"] == 1
  assert entry["train_dataset"] == "imagenet2012_subset/1pct"
  assert "label_fraction" not in entry
  names = tfds.builder("imagenet2012", data_dir=fake_imagenet.data_dir
                       ).info.features["label"].names
  [[batch]] = drawn  # the one step's batch: the list's classes, not all 6
  assert sorted(names[l] for l in batch["label"]) == sorted(
      name.split("_")[0] for name in fake_imagenet.kept)
  assert os.path.isdir(os.path.join(fake_imagenet.data_dir,
                                    "imagenet2012_subset", "1pct"))


def test_the_subset_list_unreachable_is_one_line(fake_imagenet, tmp_path,
                                                 monkeypatch):
  """Offline, imagenet2012_subset cannot fetch SimCLR's list: refused at
  once, before anything is written, with the command that prepares it."""
  monkeypatch.setattr(tfds_source, "_reachable", lambda *args, **kwargs: False)
  config = tiny(load_config("imagenet"))
  config.dataset.update(dict(data_dir=str(tmp_path / "empty_tfds"),
                             manual_dir=fake_imagenet.manual_dir,
                             image_size=8))
  config.mode = "finetune"
  config.model.init_from = "unused.pth"
  config.finetune.train_dataset = "imagenet2012_subset/10pct"
  with pytest.raises(datasets.DataError,
                     match="raw.githubusercontent.com, which is unreachable:"
                     " run `tfds build imagenet2012_subset/10pct"):
    runner.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("train_dataset, words", [
    ("imagenet2012_subset/1pct",
     "config.finetune.train_dataset='imagenet2012_subset/1pct' has 1000 "
     "classes, config.dataset.name='digits' 10: the phase is tested on "
     "config.dataset's test split, so it trains on the same classes, in the "
     "same order"),
    ("cifar10",
     "config.finetune.train_dataset='cifar10' has class 'airplane' where "
     "config.dataset.name='digits' has '0': the phase is tested on "),
    ("cifar_10",  # a typo: the message names the key that holds it
     "config.finetune.train_dataset='cifar_10' is neither 'digits', 'folder' "
     "nor a tensorflow-datasets dataset"),
])
def test_a_train_dataset_of_other_classes_is_refused(
    fake_imagenet, fake_cifar10_dir, tmp_path, offline_subset_list,
    train_dataset, words):
  del offline_subset_list
  config = tiny(load_config("digits"))
  config.finetune.train_dataset = train_dataset
  config.dataset.manual_dir = fake_imagenet.manual_dir
  config.dataset.data_dir = (fake_cifar10_dir if train_dataset == "cifar10"
                             else fake_imagenet.data_dir)
  config.mode = "finetune"
  with pytest.raises(datasets.DataError) as error:
    runner.run(config, str(tmp_path / "run"))
  assert str(error.value).startswith(words)
  assert "\n" not in str(error.value)
  assert not (tmp_path / "run").exists()
