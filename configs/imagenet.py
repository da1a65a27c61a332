"""VICReg on ImageNet (ILSVRC-2012), the official recipe: ResNet-50, 1000 epochs.

Command (a Cloud TPU pod slice, e.g. v4-32: the same command on every host;
ImageNet as a tfds dataset, prepared once from the ILSVRC-2012 tars):
  python launch.py --config=configs/imagenet.py --workdir=gs://BUCKET/vicreg_in1k \
      --config.dataset.data_dir=gs://BUCKET/tensorflow_datasets \
      --config.dataset.manual_dir=DIR_WITH_ILSVRC2012_TARS --config.distributed=True

ImageNet kept as a folder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG, as
torchvision's ImageFolder reads it) works as it is:
      --config.dataset.name=folder --config.dataset.folder=/data/imagenet \
      --config.dataset.test_split=val
The official 100-epoch run (README: 8 GPUs, batch 512, base lr 0.3):
      --config.pretrain.epochs=100 --config.pretrain.batch_size=512 \
      --config.pretrain.base_lr=0.3

The recipe of facebookresearch/vicreg (README, main_vicreg.py): ResNet-50,
expander 8192-8192-8192, batch 2048, LARS (trust coefficient 0.001, weight
decay 1e-6, biases and BatchNorm excluded), base lr 0.2 (peak 0.2 * 2048 /
256 = 1.6), 10 warm-up epochs then cosine, the official asymmetric
augmentations at 224 px; bfloat16 compute, the photometric half of the views
in the training step. The linear probe follows the official evaluate.py
(frozen encoder, BatchNorm in inference mode, SGD, 100 epochs, random
resized crops + flips; Resize(256) + CenterCrop(224) for validation; head
lr 0.02 as the README's command).

Runtime: the official 1000-epoch run used 4 nodes of 8 GPUs; 626 steps an
epoch at batch 2048, so 626k steps. No accelerator has run this config here
yet: benchmarks/ measures the step (BENCHMARKS.md).

To compare (official README / paper, linear top-1 on ImageNet val):
73.2% after 1000 epochs, 68.6% after 100 epochs.

Semi-supervised fine-tuning, as the official README runs it (evaluate.py
--weights finetune --train-percent 1|10: 20 epochs, weight decay 0, SGD
momentum 0.9, batch 256, cosine), on SimCLR's class-balanced subsets, which
tfds prepares as imagenet2012_subset/1pct and /10pct (12,811 and 128,116
images) from the same tars. In a new workdir, from a pretraining workdir's
encoder (or --config.model.init_from=resnet50.pth):
  1% of the labels (README: lr backbone 0.03, head 0.08):
      --workdir=gs://BUCKET/vicreg_in1k_1pct \
      --config.model.init_from=gs://BUCKET/vicreg_in1k --config.mode=finetune \
      --config.finetune.train_dataset=imagenet2012_subset/1pct \
      --config.finetune.epochs=20 --config.finetune.weight_decay=0 \
      --config.finetune.lr_backbone=0.03 --config.finetune.lr_head=0.08
  10% (lr backbone 0.01, head 0.1: this config's finetune values):
      --workdir=gs://BUCKET/vicreg_in1k_10pct \
      --config.model.init_from=gs://BUCKET/vicreg_in1k --config.mode=finetune \
      --config.finetune.train_dataset=imagenet2012_subset/10pct
The same with --config.mode=supervised and --config.supervised.* trains the
from-scratch baseline on the same images. Preparing a subset reads the whole
train tar once (and writes the 50,000 validation images again, unused here:
the phase is tested on imagenet2012's validation split) and downloads
SimCLR's list (1percent.txt, 10percent.txt) from raw.githubusercontent.com:
without internet, run `tfds build imagenet2012_subset/1pct
--manual_dir=DIR_WITH_ILSVRC2012_TARS --data_dir=DIR` on a connected machine
and copy DIR. ImageNet as a folder has no such dataset: a fraction of every
class is the alternative, a fixed pick per config.seed of round(fraction x
the class's images), not SimCLR's list (at 1%: 7 to 13 an ImageNet class):
      --config.finetune.label_fraction=0.01   (or 0.1)

Where this fine-tune differs from evaluate.py: its SGD decays every
parameter, ours weights only (not biases or BatchNorm), which is moot at the
README's weight decay 0; its cosine steps once an epoch, ours every step;
its epochs keep the last partial batch, ours drop it (1%: 50 steps of 256,
11 images left out, others each epoch); it tests after every epoch and
reports the best top-1, ours tests once, after the last; its training crop
is bilinear, ours the recipe's (bicubic). The README's command writes
--lr-classifier, a flag evaluate.py does not define: its head lr flag is
--lr-head (our lr_head). The head starts as evaluate.py's (normal(0.01),
bias 0).

To compare (VICReg paper, Table 1, ImageNet val top-1 of the ResNet-50
fine-tuned from VICReg's 1000-epoch weights; not checked against the paper
here): 54.8% with 1% of the labels, 69.5% with 10%.
"""

from vicreg_haiku.utils import defaults


def get_config():
  c = defaults.base_config()
  c.precision = "bfloat16"
  c.dataset.name = "imagenet2012"
  c.dataset.image_size = 224
  c.dataset.pretrain_split = "train"
  c.dataset.train_split = "train"
  c.dataset.test_split = "validation"

  c.model.encoder = "resnet50"
  c.model.stem = "imagenet"
  c.model.width = 64
  c.model.expander_dims = (8192, 8192, 8192)

  c.pretrain.batch_size = 2048
  c.pretrain.epochs = 1000
  c.pretrain.warmup_epochs = 10
  c.pretrain.base_lr = 0.2
  c.pretrain.weight_decay = 1e-6
  c.pretrain.trust_coefficient = 0.001
  c.pretrain.augmentation = "vicreg"
  c.pretrain.log_every_steps = 100
  c.pretrain.checkpoint_every_steps = 2500
  c.pretrain.knn_every_steps = 0
  c.eval_batch_size = 1024

  c.linear_probe.protocol = "official"  # evaluate.py, as the 73.2% was measured
  c.linear_probe.epochs = 100
  c.linear_probe.batch_size = 256
  c.linear_probe.official.learning_rate = 0.02
  c.linear_probe.official.weight_decay = 1e-6

  # The official semi-supervised recipe (10% of the labels: 20 epochs,
  # backbone lr 0.01, head lr 0.1, no weight decay), on all labels unless
  # train_dataset or label_fraction says otherwise (the docstring).
  for phase in (c.finetune, c.supervised):
    phase.epochs = 20
    phase.batch_size = 256
    phase.weight_decay = 0.0
  c.finetune.lr_backbone = 0.01
  c.finetune.lr_head = 0.1
  return c
