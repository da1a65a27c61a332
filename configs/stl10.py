"""VICReg on STL10: pretrain on the 100k unlabelled (+5k train) images at 96 px.

Command (a Cloud TPU VM; STL10 prepared once with `tfds build stl10`):
  python launch.py --config=configs/stl10.py --workdir=gs://BUCKET/vicreg_stl10 \
      --config.dataset.data_dir=gs://BUCKET/tensorflow_datasets \
      --config.precision=bfloat16

ResNet-18 (torchvision layout, ImageNet stem) + 8192-8192-8192 expander,
batch 256, LARS (official order, trust coefficient 0.001, wd 1e-6), base lr 0.5
with the official peak = base_lr * batch / 256, 10 warm-up epochs then cosine,
500 epochs (105k images an epoch, about 205k steps).

Runtime: dominated by pretraining. The TPU compiler estimates the step with
views fed at 13.9 ms on a v5e-8 (2,300 two-view images/s a chip), so 500
epochs in about 0.8 h, 6-7 chip-hours; on a v5e-4, 18.8 ms (3,400 a chip),
1.1 h (estimates, not measurements: `python -m vicreg_haiku.plan
--config=configs/stl10.py --topology=v5e-8 --config.precision=bfloat16`,
BENCHMARKS.md "TPU slices"). 32 images a chip leave a TPU's matrix units
mostly idle: the plan suggests --config.pretrain.batch_size=1024 on a v5e-8.

Compare with (UvA deep-learning course, tutorial 17, ResNet-18 at 96 px): a
SimCLR encoder after 500 epochs reaches 81.3% linear-probe top-1 on the STL10
test set; the same network trained from scratch on the 5k labelled images
73.3%.
"""

from vicreg_haiku.utils import defaults


def get_config():
  c = defaults.base_config()
  c.dataset.name = "stl10"
  c.dataset.image_size = 96
  c.dataset.pretrain_split = "unlabelled+train"

  c.model.encoder = "resnet18"
  c.model.stem = "imagenet"
  c.model.width = 64
  c.model.expander_dims = (8192, 8192, 8192)

  c.pretrain.batch_size = 256
  c.pretrain.epochs = 500
  c.pretrain.warmup_epochs = 10
  c.pretrain.base_lr = 0.5
  c.pretrain.log_every_steps = 100
  c.pretrain.checkpoint_every_steps = 2000
  c.pretrain.knn_every_steps = 10000

  c.linear_probe.labels_per_class = (1, 10, 100)

  for phase in (c.finetune, c.supervised):
    phase.epochs = 100
    phase.batch_size = 256
  return c
