"""The study on folders of images, end to end: launch.py on your own photos,
and the ImageNet / ImageNet-100 configs on a fake ImageNet-layout folder."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import folder_fake
from test_config import load_config
from test_runner import tiny

from vicreg_haiku import runner
from vicreg_haiku.data import class_filter
from vicreg_haiku.data import sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY = ["--config.model.expander_dims=(32,32,32)",
         "--config.dataset.image_size=16", "--config.pretrain.batch_size=8",
         "--config.pretrain.max_steps=2", "--config.pretrain.log_every_steps=1",
         "--config.pretrain.rankme_examples=8", "--config.eval_batch_size=16",
         "--config.linear_probe.epochs=2", "--config.finetune.epochs=1",
         "--config.finetune.batch_size=8", "--config.supervised.epochs=1",
         "--config.supervised.batch_size=8"]
_RESNET = ("--config.model.width=4",)
# ViT-Tiny cut to 2 blocks, 4x4 patches of the 16 px images; drop-path on,
# so the classifier phases draw it too.
_VIT = ("--config.model.encoder=vit_tiny", "--config.model.depth=2",
        "--config.model.patch_size=4", "--config.model.drop_path=0.1")


def _launch(workdir, *overrides, encoder=_RESNET):
  return subprocess.run([
      sys.executable,
      os.path.join(ROOT, "launch.py"),
      f"--config={os.path.join(ROOT, 'configs', 'folder.py')}",
      f"--workdir={workdir}", *_TINY, *encoder, *overrides
  ],
                        capture_output=True,
                        text=True,
                        timeout=900,
                        cwd=ROOT)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """ROOT/unlabelled/ (photos in nested folders), ROOT/{train,test}/<class>/."""
  root = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  folder_fake.write_images(str(root / "unlabelled"), 10, rng)
  folder_fake.write_images(str(root / "unlabelled" / "2024" / "july"), 6, rng)
  folder_fake.image_folder(str(root), splits=("train", "test"),
                           classes=("cat", "dog"), per_class=4)
  return root


def test_every_phase_of_a_vit_on_a_folder_through_launch(photos, tmp_path):
  """A new user's `--config.model.encoder=vit_small` on their folder, with a
  tiny ViT: the whole study. (The ResNet's every phase is test_runner's.)"""
  result = _launch(tmp_path / "run", f"--config.dataset.folder={photos}",
                   "--config.mode=all",
                   "--config.dataset.pretrain_split=unlabelled+train",
                   "--config.dataset.train_split=train",
                   "--config.dataset.test_split=test", encoder=_VIT)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / "run" / "results.json") as f:
    results = json.load(f)
  assert {"pretrain_knn", "linear_probe", "random_init_probe",
          "raw_pixels_probe", "finetune", "supervised"} <= set(results)
  assert results["linear_probe"]["labels"] == 8
  with open(tmp_path / "run" / "config.json") as f:
    assert json.load(f)["model"]["encoder"] == "vit_tiny"
  # No TensorFlow C++ line reaches the user (launch_env): not at import,
  # nor oneDNN's uint8 notice at the first batch.
  assert not [line for line in result.stderr.splitlines()
              if re.match(r"[IEW]\d{4} ", line)], result.stderr[-3000:]
  # The index was written beside the photos and is reused.
  assert (photos / ".vicreg_haiku_index").is_dir()


def test_unlabelled_photos_pretrain_and_refuse_label_phases(photos, tmp_path):
  unlabelled = photos / "unlabelled"
  refused = _launch(tmp_path / "refused",
                    f"--config.dataset.folder={unlabelled}",
                    "--config.mode=all")
  assert refused.returncode == 1
  errors = [l for l in refused.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "linear_probe phase needs labels" in errors[0]
  assert "unlabelled" in errors[0] and "--config.mode=pretrain" in errors[0]
  assert not (tmp_path / "refused").exists()
  result = _launch(tmp_path / "run", f"--config.dataset.folder={unlabelled}")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / "run" / "results.json") as f:
    assert json.load(f) == {"pretrain": {"steps": 2, "loss": "vicreg"}}
  with open(tmp_path / "run" / "pretrain" / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [1, 2]
  assert all(np.isfinite(r["rankme"]) for r in records)


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
  """train/ and val/ with the 100 ImageNet-100 classes and two others."""
  root = tmp_path_factory.mktemp("imagenet")
  classes = class_filter.class_filter("imagenet100") + ("n01440764",
                                                        "n02102040")
  folder_fake.image_folder(str(root), splits=("train", "val"),
                           classes=classes, per_class=1,
                           sizes=((40, 52), (48, 36)))
  return root


@pytest.mark.parametrize("name", ["imagenet", "imagenet100"])
def test_imagenet_configs_run_on_an_imagenet_folder(name, fake_imagenet,
                                                    tmp_path):
  config = tiny(load_config(name), batch_size=8, max_steps=2,
                log_every_steps=1, rankme_examples=8)
  config.dataset.update(name="folder", folder=str(fake_imagenet),
                        image_size=16, test_split="val")
  config.precision = "float32"  # bfloat16 is for accelerators
  config.mode = "pretrain"
  results = runner.run(config, str(tmp_path))
  assert results["pretrain_knn"]["steps"] == 2
  classes = sources.split_info(config, "train").class_names
  assert len(classes) == (100 if name == "imagenet100" else 102)
