"""VICReg on ImageNet-100 (the 100-class subset of CMC), solo-learn's recipe.

Command (ImageNet as a folder, train/<wnid>/*.JPEG and val/<wnid>/*.JPEG; the
100 classes are picked from it, nothing is copied):
  python launch.py --config=configs/imagenet100.py --workdir=/tmp/vicreg_in100 \
      --config.dataset.folder=/data/imagenet

With ImageNet as a tfds dataset instead: --config.dataset.name=imagenet2012
--config.dataset.test_split=validation (and data_dir / manual_dir as in
configs/imagenet.py).

solo-learn's scripts/pretrain/imagenet-100/vicreg.yaml: ResNet-18 at 224 px,
expander 2048-2048-2048, batch 256, 400 epochs, LARS (base lr 0.3, weight
decay 1e-4, trust coefficient 0.02, biases and norms excluded), 10 warm-up
epochs then cosine, symmetric augmentations (crop scale 0.2-1, blur 0.5 and
solarisation 0.1 on both views). Two differences from solo-learn: our LARS
is the official VICReg one (solo-learn clips the adaptive lr at 1), and
solo-learn's linear probe is its own (this config runs the official one).

Runtime: ~126.7k images an epoch, 494 steps at batch 256, 198k steps in all
(solo-learn ran it on 2 GPUs); benchmarks/ measures the step (BENCHMARKS.md).

To compare (solo-learn README, ImageNet-100 val, linear top-1):
79.2% online, 79.4% offline.
"""

from vicreg_haiku.utils import defaults


def get_config():
  c = defaults.base_config()
  c.dataset.name = "folder"
  c.dataset.classes = "imagenet100"
  c.dataset.image_size = 224
  c.dataset.pretrain_split = "train"
  c.dataset.train_split = "train"
  c.dataset.test_split = "val"

  c.model.encoder = "resnet18"
  c.model.stem = "imagenet"
  c.model.width = 64
  c.model.expander_dims = (2048, 2048, 2048)

  c.pretrain.batch_size = 256
  c.pretrain.epochs = 400
  c.pretrain.warmup_epochs = 10
  c.pretrain.base_lr = 0.3
  c.pretrain.weight_decay = 1e-4
  c.pretrain.trust_coefficient = 0.02
  c.pretrain.log_every_steps = 100
  c.pretrain.checkpoint_every_steps = 2000
  c.eval_batch_size = 512

  views = c.augmentations.vicreg
  views.crop_scale = (0.2, 1.0)
  views.blur_prob = (0.5, 0.5)
  views.solarize_prob = (0.1, 0.1)

  for phase in (c.finetune, c.supervised):
    phase.epochs = 100
    phase.batch_size = 256
  return c
