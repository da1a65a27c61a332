"""VICReg on scikit-learn's 8x8 digits: the embedded default, offline, on a CPU.

Command:
  python launch.py --config=configs/digits.py --workdir=/tmp/vicreg_digits

Runs every phase on the 1,797 digits upsampled to 16 px, split 70/30
stratified: pretraining (a width-12 ResNet-18 with the CIFAR stem, a
1024-1024-1024 expander, batch 128, 32 epochs = 288 steps; LARS with trust
coefficient 0.02, solo-learn's CIFAR value: the official 0.001 barely moves a
short schedule), linear probes of the VICReg, random-init and raw-pixel
features with 1, 5, 10, 50 and all labels per class, fine-tuning and the same
network from scratch (6 epochs each).

Runtime on 2 CPU cores: 1 min 55 s the first time (programs compiled), 1
min 52 s for a rerun (programs loaded from the compilation cache), on a
quiet machine (2026-12-02, load < 1.5); 3-4 min when other jobs share the
cores; neighbours.png and t-SNE add about 20-25 s. Training is most of it
(BENCHMARKS.md has the split).
Expected (measured 2026-12-02 evening, seed 0 / seed 1, 2-core AVX-512 CPU,
jax 0.10.2; README says how the machine moves them): VICReg linear probe
0.989 / 0.993 (all labels) and 0.965 / 0.978 (10 per class) against
0.678 / 0.641 and 0.500 / 0.513 for the random-init encoder and 0.957 / 0.959
and 0.850 / 0.835 for raw pixels; kNN 0.976 / 0.985; fine-tune 0.983 / 0.978,
from scratch 0.676 / 0.678; the loss falls from 23.8 to 19.6.

A ViT: --config.model.encoder=vit_tiny and nothing else takes the file's
vit_defaults below (the console names them; a value set on the command
line wins): patch 4 (a 4 x 4 grid of 16 tokens), 6 blocks, AdamW at a 2e-3
peak, 40 epochs. Measured (seed 0 / seed 1, 2026-12-08; README, "A ViT on
small data: what to expect"): VICReg probe 0.930 / 0.939 (all labels) and
0.869 / 0.848 (10 per class) against 0.735 / 0.769 and 0.511 / 0.541 for
its random init (raw pixels as above); kNN 0.919 / 0.906; fine-tune
0.846 / 0.859, from scratch 0.313 / 0.365. It learns, 31-36 points above
its random init at 10 labels a class, but stays below raw pixels with all
labels and below the ResNet: small ViTs need more data or epochs than
ResNets. 8 min 59 s on 2 quiet cores (seed 0, load < 2.6); 12 min 15 s /
12 min 48 s shared with other jobs (load 2-6).
"""

from vicreg_haiku.utils import defaults


def get_config():
  c = defaults.base_config()
  c.dataset.name = "digits"
  c.dataset.image_size = 16
  c.dataset.pretrain_split = "train"

  c.model.encoder = "resnet18"
  c.model.stem = "cifar"
  c.model.width = 12
  c.model.expander_dims = (1024, 1024, 1024)

  # 9 steps an epoch: at batch 128 the same time buys twice the updates of
  # batch 256 (the step costs ~0.9x per image), which short runs need.
  c.pretrain.batch_size = 128
  c.pretrain.epochs = 32
  c.pretrain.warmup_epochs = 3
  c.pretrain.base_lr = 0.3
  c.pretrain.trust_coefficient = 0.02
  c.pretrain.checkpoint_every_steps = 100
  # Monitors on curves.png (each pass costs steps): kNN 4 times, RankMe on
  # 512 examples 10 times (log steps are every 2nd).
  c.pretrain.knn_every_steps = 72
  c.pretrain.rankme_every_steps = 30
  c.pretrain.rankme_examples = 512

  views = c.augmentations.vicreg
  views.crop_scale = (0.3, 1.0)
  views.flip_prob = 0.0  # a mirrored digit is another glyph
  views.rotation_degrees = 10.0

  c.linear_probe.epochs = 100
  c.linear_probe.labels_per_class = (1, 5, 10, 50)

  for phase in (c.finetune, c.supervised):
    phase.epochs = 6
    phase.batch_size = 128
    phase.crop_scale = (0.5, 1.0)

  # --config.model.encoder=vit_tiny: the recipe above leaves a ViT (patch 2:
  # 64 tokens, 12 blocks, AdamW at 2.5e-4) at its random init's probe after
  # 25 minutes (BENCHMARKS.md). Patches of 4 px (16 tokens) and 6 blocks cut
  # a step's cost several times; a peak lr 8x the linear rule's (2e-3 at
  # batch 128; 4e-3 collapses) makes it learn in 40 epochs.
  c.vit_defaults = dict(
      model=dict(patch_size=4, depth=6),
      pretrain=dict(epochs=40, warmup_epochs=4, adamw=dict(base_lr=4e-3)))
  return c
