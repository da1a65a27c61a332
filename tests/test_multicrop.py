"""Local views (multi-crop) and LeJEPA's loss through launch.py: a killed run
resumes exactly, the device path trains as the host path, and a ViT takes
local views at another resolution."""

import subprocess

import numpy as np
import pytest

from test_reliability import kill_at_first_checkpoint
from test_reliability import metrics
from test_reliability import run_launch
from test_reliability import start_launch

from vicreg_haiku.evaluation import results
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import defaults

# LeJEPA with two local views of the 8 px digits (round(8 * 96 / 224) =
# 3 px): the directions keyed by the step and the locals' own draws are
# what a resume must replay. (VICReg's multi-view loss: tests/test_sigreg.)
SIGREG = ("--config.loss.name=sigreg", "--config.loss.sigreg.slices=64")
FLAGS = ("--config.pretrain.local_views=2", *SIGREG)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("multicrop"))
  assert run_launch(workdir, *FLAGS) == 0
  return workdir


def test_a_killed_multicrop_run_resumes_exactly(reference, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  proc = start_launch(workdir, *FLAGS, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
  killed_at = kill_at_first_checkpoint(proc, workdir, 400)
  assert run_launch(workdir, *FLAGS) == 0
  assert f"resuming from step {killed_at[-1]}" in capsys.readouterr().out
  assert metrics(workdir) == metrics(reference)


def test_the_loss_terms_are_logged(reference):
  for record in metrics(reference):
    assert all(np.isfinite(record[t]) for t in ("prediction", "sigreg"))
    assert "covariance" not in record
  # What names the encoder's column in the probe tables (test_results).
  assert results.read(reference)["pretrain_knn"]["loss"] == "sigreg"


def test_the_device_path_trains_as_the_host_path(reference, tmp_path):
  """The local views made in the step (device_augmentations.local_views)
  give the host path's run, to float32 rounding."""
  workdir = str(tmp_path / "device")
  assert run_launch(workdir, *FLAGS,
                    "--config.pretrain.augment_on=device") == 0
  ours, host = metrics(workdir), metrics(reference)
  assert [m["step"] for m in ours] == [m["step"] for m in host]
  np.testing.assert_allclose([m["loss"] for m in ours],
                             [m["loss"] for m in host], rtol=1e-4)


def test_local_views_reach_the_loss():
  """With local views the step's loss is the multi-view one: the views'
  list holds 2 + L arrays of the local size, and dropping them changes the
  loss (the locals are not silently ignored)."""
  config = defaults.base_config()
  config.dataset.image_size = 8
  config.pretrain.local_views = 3
  rng = np.random.default_rng(0)
  batch = {"view_a": rng.normal(size=(4, 8, 8, 3)),
           "view_b": rng.normal(size=(4, 8, 8, 3)),
           "local_views": rng.normal(size=(4, 3, 3, 3, 3))}
  views = pretrain_step.views(config, batch)
  assert [v.shape for v in views] == [(4, 8, 8, 3)] * 2 + [(4, 3, 3, 3)] * 3
  embeddings = [rng.normal(size=(4, 6)).astype(np.float32)
                for _ in range(5)]
  mesh = parallel.make_mesh()
  for name in ("vicreg", "sigreg"):
    config.loss.name = name
    with_locals, _ = pretrain_step.loss_of_views(config, embeddings, 0, mesh)
    without, _ = pretrain_step.loss_of_views(config, embeddings[:2], 0, mesh)
    assert abs(float(with_locals) - float(without)) > 1e-3, name


def test_a_vit_trains_on_local_views_of_another_resolution(tmp_path):
  """ViT-Tiny/2 at 8 px (4 x 4 patches) with 4 px local views (2 x 2: the
  position embeddings resampled to the local grid)."""
  workdir = str(tmp_path / "vit")
  vit = ["--config=configs/digits.py", "--config.mode=pretrain",
         "--config.model.encoder=vit_tiny", "--config.model.depth=1",
         "--config.model.patch_size=2", "--config.dataset.image_size=8",
         "--config.model.expander_dims=(32,32,32)",
         "--config.pretrain.batch_size=64", "--config.pretrain.max_steps=2",
         "--config.pretrain.knn_every_steps=0",
         "--config.pretrain.rankme_examples=64",
         "--config.pretrain.local_views=2", "--config.pretrain.local_size=4",
         *SIGREG]
  assert run_launch(workdir, base=vit) == 0
  assert np.isfinite(metrics(workdir)[-1]["loss"])
