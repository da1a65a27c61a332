"""LeJEPA (SIGReg) on your own folder of small images: the small-data recipe.

Command (pretraining on every image below ROOT, at 32 px):
  python launch.py --config=configs/folder_lejepa.py --workdir=/tmp/lejepa \
      --config.dataset.folder=ROOT

With labelled train and test folders (as configs/folder.py says), add
  --config.mode=all --config.dataset.pretrain_split=train \
  --config.dataset.train_split=train --config.dataset.test_split=test

Source: LeJEPA (Balestriero & LeCun, arXiv 2511.08544): the loss (1 - lambda)
prediction + lambda SIGReg with lambda 0.05, 1024 slices, 17 knots on
[0, 3] (the reference code's defaults); the rest is our CIFAR-size recipe,
the one BENCHMARKS.md's table measured ("LeJEPA (SIGReg) and local views"):
ResNet-18 with the CIFAR stem, width 16 (64 is torchvision's; use it on an
accelerator), a 1024-1024-1024 expander, batch 256, LARS at base lr 0.3
with trust coefficient 0.02 (AdamW at LeJEPA's 5e-4 probed 4 points lower
there), crop scale (0.2, 1), two views. Six local views
(--config.pretrain.local_views=6, LeJEPA's multi-crop) cost ~2.2x a step
and, at equal wall-clock, gave no more. Epochs: a few hundred for ~10k
images, as configs/folder.py says (not measured that long here).

Runtime on 2 CPU cores: ~75 s an epoch of 10,000 images (~140 two-view
images/s), so 200 epochs take ~4 h; one GPU or TPU chip runs thousands of
images/s.
Expected, measured on the CIFAR-10 subset (10 classes, 10,000 JPEGs at 32
px) with --config.pretrain.epochs=4 (~6.5 min), seed 0 / 1 (2026-12-08):
LeJEPA linear probe 0.376 / 0.376 with every label, against 0.306 / 0.330
for the random-init encoder and 0.298 for raw pixels; kNN 0.339 / 0.338.
VICReg on the same settings (--config.loss.name=vicreg) probed 0.459 /
0.443 at that budget (BENCHMARKS.md).
"""

from vicreg_haiku.utils import defaults


def get_config():
  c = defaults.base_config()
  c.mode = "pretrain"  # "all" once train_split / test_split hold labels
  c.dataset.name = "folder"
  c.dataset.image_size = 32
  c.dataset.pretrain_split = "."
  c.dataset.train_split = "."
  c.dataset.test_split = "."

  c.model.encoder = "resnet18"
  c.model.stem = "cifar"
  c.model.width = 16
  c.model.expander_dims = (1024, 1024, 1024)

  c.loss.name = "sigreg"
  c.loss.sigreg.lambd = 0.05
  c.loss.sigreg.slices = 1024

  c.augmentations.vicreg.crop_scale = (0.2, 1.0)
  c.pretrain.batch_size = 256
  c.pretrain.base_lr = 0.3
  c.pretrain.trust_coefficient = 0.02
  c.pretrain.epochs = 200
  c.pretrain.warmup_epochs = 1
  c.pretrain.log_every_steps = 50
  c.pretrain.checkpoint_every_steps = 1000
  return c
