"""A labelled folder whose test split is its train split (configs/folder.py's
default "." on an ImageFolder ROOT): a fixed part of every class is held
out, and nothing is scored on the images it was fit on."""

import json
import os
from collections import Counter

import numpy as np
import pytest

import folder_fake
from test_config import load_config
from test_runner import tiny

from vicreg_haiku import config_checks
from vicreg_haiku import runner
from vicreg_haiku.data import datasets
from vicreg_haiku.data import shards
from vicreg_haiku.data import sources
from vicreg_haiku.evaluation import features
from vicreg_haiku.utils import errors

_CLASSES = ("cat", "dog", "owl")
_PER_CLASS = 10


@pytest.fixture(scope="module")
def labelled_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("labelled_root")
  folder_fake.image_folder(str(root), splits=(".",), classes=_CLASSES,
                           per_class=_PER_CLASS, sizes=((24, 24),))
  return str(root)


def _config(root, **dataset):
  config = load_config("folder")
  config.dataset.update(dict(folder=root, **dataset))
  return config


def _class_of(path):
  return os.path.basename(os.path.dirname(path))


def test_the_held_out_part_is_a_fixed_fraction_of_every_class(labelled_root):
  config = _config(labelled_root, held_out_fraction=0.2)
  assert "6 images (0.2 of every class, fixed by seed 0)" in (
      sources.hold_out(config))
  assert config.dataset.test_split == "." + sources.HELD_OUT
  assert config.dataset.train_split == "." + sources.REST
  # Pretraining on "." too: it never sees the held-out images either.
  assert config.dataset.pretrain_split == "." + sources.REST
  test = set(datasets.example_names(config, config.dataset.test_split))
  train = set(datasets.example_names(config, config.dataset.train_split))
  every = set(datasets.example_names(config, "."))
  assert not test & train and test | train == every
  assert Counter(map(_class_of, test)) == {c: 2 for c in _CLASSES}
  again = _config(labelled_root, held_out_fraction=0.2)
  sources.hold_out(again)
  assert set(datasets.example_names(again, again.dataset.test_split)) == test
  other_seed = _config(labelled_root, held_out_fraction=0.2)
  other_seed.seed = 1
  sources.hold_out(other_seed)
  assert set(datasets.example_names(other_seed,
                                    other_seed.dataset.test_split)) != test
  # Label fractions pick from the rest only.
  half = sources.shard(config, config.dataset.train_split, 0, 1, 0.5)
  assert half.info.num_examples == 12
  assert set(half.names) <= train
  # Labels follow the images.
  labels = np.concatenate([b["label"][b["mask"]] for b in datasets.eval_batches(
      config, config.dataset.test_split, batch_size=4)])
  names = datasets.example_names(config, config.dataset.test_split)
  assert [_CLASSES[l] for l in labels] == [_class_of(n) for n in names]


def test_disjoint_or_unlabelled_splits_are_left_alone(labelled_root, tmp_path):
  config = _config(labelled_root, train_split="cat+dog", test_split="owl")
  assert sources.hold_out(config) is None
  assert config.dataset.test_split == "owl"
  folder_fake.write_images(str(tmp_path / "photos"), 3,
                           np.random.default_rng(0))
  config = _config(str(tmp_path))
  config.dataset.train_split = config.dataset.test_split = "photos"
  assert sources.hold_out(config) is None


def test_refusals(labelled_root, tmp_path):
  with pytest.raises(shards.DataError, match="overlap"):
    sources.hold_out(_config(labelled_root, test_split="./cat"))
  folder_fake.image_folder(str(tmp_path), splits=(".",), classes=("a", "b"),
                           per_class=1)
  config = _config(str(tmp_path))
  with pytest.raises(shards.DataError, match="has one image"):
    sources.hold_out(config)
  for fraction in (0.0, 1.0, 1.5):
    config = _config(labelled_root, held_out_fraction=fraction)
    with pytest.raises(errors.ConfigError, match="held_out_fraction"):
      config_checks.validate(config, 1)


def _run_config(root):
  config = tiny(_config(root))
  config.mode = "all"
  config.dataset.image_size = 16
  config.pretrain.batch_size = 8
  config.pretrain.rankme_examples = 8
  config.linear_probe.labels_per_class = (1,)
  for phase in (config.finetune, config.supervised):
    phase.batch_size = 8
  return config


def test_a_run_with_the_default_splits_scores_only_held_out_images(
    labelled_root, tmp_path, monkeypatch, capsys):
  extracted = []
  extract = features.extract

  def recording(config, apply_fn, split, mesh, limit=None):
    extracted.append(split)
    return extract(config, apply_fn, split, mesh, limit)

  monkeypatch.setattr(features, "extract", recording)
  results = runner.run(_run_config(labelled_root), str(tmp_path))
  # kNN monitor, probes, fine-tune and baseline: fit on the rest, scored on
  # the held-out images, never on "." itself.
  assert set(extracted) == {"." + sources.REST, "." + sources.HELD_OUT}
  assert results["held_out"]["test_examples"] == 3
  assert results["held_out"]["train_examples"] == 27
  assert results["linear_probe"]["labels"] == 27
  assert results["finetune"]["labels"] == 27
  assert "held out for evaluation" in capsys.readouterr().out
  with open(os.path.join(tmp_path, "results.md")) as f:
    assert f.read().startswith("Scored on held-out images: ")
  with open(os.path.join(tmp_path, "config.json")) as f:
    recorded = json.load(f)["dataset"]
  assert recorded["test_split"] == "." + sources.HELD_OUT
  assert recorded["pretrain_split"] == "." + sources.REST
  # A rerun of the same command finds its own run (config.json) finished.
  again = runner.run(_run_config(labelled_root), str(tmp_path))
  assert again == json.loads(open(os.path.join(tmp_path,
                                               "results.json")).read())
