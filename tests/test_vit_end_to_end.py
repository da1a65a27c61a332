"""A ViT through launch.py: kill -9 then resume exactly, and the export.
(Every phase of a ViT through launch.py is test_folder_study's.)

ViT-Tiny (width 192) cut to 2 blocks (model.depth; 12 blocks compile for
minutes here) with patch 4 on the 8 px digits of test_reliability's tiny
flags: 2x2 patches. drop_path 0.1: the pretraining step draws it from
keys folded from (seed, phase, step), so the resume must replay them.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from test_config import load_config
from test_reliability import FLAGS
from test_reliability import ROOT
from test_reliability import WIDTH
from test_reliability import kill_at_first_checkpoint
from test_reliability import metrics
from test_reliability import run_launch
from test_reliability import start_launch
from test_vit import TOLERANCE
from test_vit import relative_error

from vicreg_haiku.evaluation import pretrained

# test_reliability's tiny digits flags without the ResNet's width, which a
# ViT refuses.
BASE = [flag for flag in FLAGS if flag != WIDTH]
VIT = ["--config.model.encoder=vit_tiny", "--config.model.depth=2",
       "--config.model.patch_size=4",
       "--config.model.drop_path=0.1"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 6-step ViT pretraining."""
  workdir = str(tmp_path_factory.mktemp("vit_reference"))
  assert run_launch(workdir, *VIT, base=BASE) == 0
  assert [r["step"] for r in metrics(workdir)] == [2, 4, 6]
  return workdir


def test_the_vit_pretrains_with_adamw_and_drop_path(reference):
  with open(os.path.join(reference, "config.json")) as f:
    config = json.load(f)
  assert config["model"]["encoder"] == "vit_tiny"
  assert config["pretrain"]["optimizer"] == "auto"  # AdamW for a ViT
  lrs = [r["lr"] for r in metrics(reference)]
  # AdamW at the digits config's ViT base_lr x 64 / 256 peak after the
  # 1-epoch (3-step) warm-up, not LARS's 0.3 of its ResNet.
  base_lr = config["pretrain"]["adamw"]["base_lr"]
  assert base_lr == load_config("digits").vit_defaults.pretrain.adamw.base_lr
  assert 0 < max(lrs) <= base_lr * 64 / 256 + 1e-12, lrs
  assert all(r["skipped_steps"] == 0 for r in metrics(reference))


def test_kill_then_rerun_gives_the_uninterrupted_run(reference, tmp_path,
                                                     capsys):
  workdir = str(tmp_path / "run")
  proc = start_launch(workdir, *VIT, base=BASE, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
  killed_at = kill_at_first_checkpoint(proc, workdir, 500)
  assert run_launch(workdir, *VIT, base=BASE) == 0
  assert f"resuming from step {killed_at[-1]}" in capsys.readouterr().out
  assert metrics(workdir) == metrics(reference)


def test_export_loads_into_timm_with_the_printed_lines(reference, tmp_path):
  """python -m vicreg_haiku.export -> the printed timm.create_model(...) and
  load_state_dict(strict=True) -> our features."""
  output = str(tmp_path / "vit.pth")
  result = subprocess.run(
      [sys.executable, "-m", "vicreg_haiku.export", f"--workdir={reference}",
       f"--output={output}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
  assert "(vit_tiny, patch_size=4, pool=token)" in result.stdout
  lines = result.stdout.split("load it in PyTorch with:\n")[1]
  assert "timm.create_model('vit_tiny_patch16_224', pretrained=False, " \
      "num_classes=0, img_size=8, patch_size=4, global_pool='token', " \
      "depth=2)" in lines
  namespace = {}
  exec(textwrap.dedent(lines), namespace)  # pylint: disable=exec-used
  model = namespace["model"].eval()
  images = np.random.default_rng(10).normal(size=(5, 8, 8, 3)).astype(
      np.float32)
  with torch.no_grad():
    theirs = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
  ours = pretrained.load_encoder(reference)(images)
  assert relative_error(ours, theirs.numpy()) <= TOLERANCE


def test_init_from_a_vit_workdir_ignores_the_resnet_settings(reference):
  """model.width and model.stem are no part of a ViT's network: a config
  whose (ResNet) values differ from the workdir's starts from it."""
  config = pretrained.read_config(reference)
  config.model.update(width=64, stem="imagenet", init_from=reference)
  weights = pretrained.import_init_from(config)
  assert weights.source == f"{reference}/pretrain step 6"
