"""VICReg on your own folder of images (JPEG, PNG, ...; any sizes).

Command (pretraining on every image below ROOT):
  python launch.py --config=configs/folder.py --workdir=/tmp/vicreg_photos \
      --config.dataset.folder=ROOT

With a small labelled set for the probe, fine-tune and baseline (class
subdirectories, e.g. ROOT/train/<class>/*.jpg and ROOT/test/<class>/*.jpg,
the unlabelled photos in ROOT/unlabelled/):
  python launch.py --config=configs/folder.py --workdir=/tmp/vicreg_photos \
      --config.dataset.folder=ROOT --config.mode=all \
      --config.dataset.pretrain_split=unlabelled+train \
      --config.dataset.train_split=train --config.dataset.test_split=test

The first run lists and checks every file once (a warning names the files
that do not decode; they are left out) into ROOT/.vicreg_haiku_index, which
later runs reuse. A split is decoded into memory when its images share one
size and fit in dataset.in_memory_max_gb, else streamed from disk.

ResNet-18 (ImageNet stem) at 96 px, 2048-2048-2048 expander, the official
VICReg augmentations and LARS; the base learning rate follows the VICReg
paper's batch-size table (batch 128: 0.8, 256: 0.5, 512: 0.4, larger: 0.3)
unless --config.pretrain.base_lr is given. Epochs: a few hundred for ~10k
images, ~200 for ~100k, ~100 for a million (the schedule is by epochs).
Use --config.dataset.image_size=128 for larger photos, and on an accelerator
--config.precision=bfloat16 (pretrain.augment_on="auto", the default, moves
the colour work into the step there).

A ViT on a small folder (thousands of small images): --config.model.encoder=
vit_tiny alone keeps this file's 96 px (patch 8: 144 tokens), 12 blocks and
AdamW's linear rule (5e-4 x batch / 256), slow on a CPU and slow to learn
from little data. Take configs/digits.py's vit_defaults, at 32 px:
  --config.dataset.image_size=32 --config.model.patch_size=8 (a 4 x 4 grid)
  --config.model.depth=6 --config.model.expander_dims=(1024,1024,1024)
  --config.pretrain.batch_size=128 --config.pretrain.adamw.base_lr=4e-3
  --config.pretrain.epochs=15 --config.pretrain.warmup_epochs=2
  --config.augmentations.vicreg.crop_scale=(0.2,1.0)
(a 2e-3 peak lr, 4e-3 collapsed on the digits; epochs: ~45k images seen,
15 for 3,000 images, the digits' 40 for 1,257). On 3 CIFAR-10 classes
(3,000 JPEGs, 2026-12-08, seed 0) the probe reached 0.717 with every label,
8 points above its random init (0.638) and 10 above raw pixels (0.618), in
13 min 42 s on 2 cores shared with other jobs. A ResNet stays ahead on small
data (README, "A ViT on small data: what to expect").

Runtime: on 2 CPU cores, ~25 two-view images/s at 96 px (BENCHMARKS.md); on
one GPU or TPU chip, thousands. Expected: no reference number exists for
your data; the probe's lines (random-init encoder, raw pixels) are the
baseline to beat.
"""

from ml_collections import config_dict

from vicreg_haiku.utils import defaults


def get_config():
  c = defaults.base_config()
  c.mode = "pretrain"  # "all" once train_split / test_split hold labels
  c.dataset.name = "folder"
  c.dataset.image_size = 96
  c.dataset.pretrain_split = "."
  c.dataset.train_split = "."
  c.dataset.test_split = "."

  c.model.encoder = "resnet18"
  c.model.stem = "imagenet"
  c.model.expander_dims = (2048, 2048, 2048)

  c.pretrain.batch_size = 256
  c.pretrain.epochs = 200
  c.pretrain.warmup_epochs = 10
  c.pretrain.base_lr = config_dict.placeholder(float)  # None: paper's table
  c.pretrain.log_every_steps = 100
  c.pretrain.checkpoint_every_steps = 1000

  for phase in (c.finetune, c.supervised):
    phase.epochs = 100
  return c
