"""VICReg on ImageNet (ILSVRC-2012) with a ViT-S/16 at 224 px, AdamW.

Command (a Cloud TPU slice or GPUs; ImageNet as a tfds dataset, prepared once
from the ILSVRC-2012 tars, or as a folder as in configs/imagenet.py):
  python launch.py --config=configs/imagenet_vit.py \
      --workdir=gs://BUCKET/vicreg_vits16 \
      --config.dataset.data_dir=gs://BUCKET/tensorflow_datasets \
      --config.dataset.manual_dir=DIR_WITH_ILSVRC2012_TARS --config.distributed=True
Evaluate published DINO ViT-S/16 weights with the same probes (timm / DINO
key layout, the `head.*` dropped; DINO's full checkpoint gives its teacher):
      --config.model.init_from=dino_deitsmall16_pretrain.pth \
      --config.mode=linear_probe

The recipe (no published VICReg ViT-S/16 ImageNet recipe exists to copy;
files cited at facebookresearch/VICRegL 803ae4c, facebookresearch/dino
7c446df, galilai-group/stable-pretraining d15ec96d, vturrisi/solo-learn
9187ea3):
- AdamW, base lr 5e-4 x batch / 256, weight decay 0.05, 10 warm-up epochs
  then a cosine to 0.001 x the peak, drop-path 0.1: the VICReg authors' own
  AdamW recipe, VICRegL's defaults (main_vicregl.py:48 --drop-path-rate
  0.1, :70 --warmup-epochs 10, :72-75 --optimizer adamw, --base-lr 0.0005,
  --end-lr-ratio 0.001, --weight-decay 0.05; utils.py:44-63 the schedule,
  ours), for ConvNeXt backbones: its README runs ConvNeXt-S at base lr
  7.5e-4 (batch 384, 100 epochs; README.md:141) and 5e-4 (batch 576, 400
  epochs; :155). Its AdamW decays every parameter of more than one dimension
  (optimizers.py:88), a ViT's pos_embed and cls_token included; ours exempts
  those two as timm does (VisionTransformer.no_weight_decay).
- DINO's ViT-S/16 uses the same lr, warm-up and drop-path (main_dino.py:96,
  :99, :105) with weight decay 0.04 -> 0.4 on a cosine (:82, :84) and each
  parameter's gradient clipped to norm 3.0 (:87, utils.py:132-141); the
  nearest here: --config.pretrain.adamw.weight_decay=0.04
  --config.pretrain.adamw.weight_decay_end=0.4 (pretrain.clip_grad_norm
  clips the global norm, not DINO's per-parameter norms).
- LARS: stable-pretraining reports it collapsing BYOL and Barlow Twins on
  ViT-S (benchmarks/imagenet10/RESULTS.md:60), but its own VICReg ViT-S/16,
  the 79.4% below, trains with LARS (benchmarks/imagenet10/
  vicreg-vit-small.py:31-38: lr 0.3 x batch / 256 at batch 256, weight
  decay 1e-4, trust coefficient 0.02, solo-learn's clip_lr, which our LARS
  lacks), so LARS is not known to fail VICReg on a ViT; AdamW is the VICReg
  authors' choice beyond ResNets and what DINO, DeiT and solo-learn's ViT
  recipes use (solo-learn has no VICReg ViT config; its DINO ViT-Tiny and
  MoCo v3 ViT-S take AdamW: scripts/pretrain/imagenet-100/dino_vit.yaml:33,
  mocov3_vit.yaml:33). --config.pretrain.optimizer=lars is the other.
- Expander 2048-2048-2048 (ViT-S features are 384-wide): stable-pretraining's
  VICReg ViT-S/16 uses the same (vicreg-vit-small.py:22); smaller than the
  ResNet-50 recipe's 8192 (the VICReg paper's Table 8 shows ResNet-50
  gaining from width; no such study for ViTs; not measured here).
- Batch 1024, 100 epochs, the official VICReg augmentations, bfloat16.

Runtime (an estimate from the step's FLOPs, until measured): XLA's cost
analysis counts 56.6 GFLOPs an image for the two-view ViT-S/16 training step
at 224 px with this expander (benchmarks/train_step.py, 905.5 GFLOP a step
of 16; a forward is 4.6 GMACs). 100 epochs of 1.28M images are ~7.2e18
FLOPs: ~5 h on one H100 at 40% of its 989 TFLOP/s bfloat16 peak (~7k
images/s, if the input pipeline keeps up; on one host it likely will not).
benchmarks/accelerator.py has ViT-S/16 rows that measure the step.

To compare (other methods and data; not reproduced here): DINO ViT-S/16,
800 epochs: 77.0% linear, 74.5% k-NN on ImageNet (DINO paper, Table 2;
its README.md:26-27); stable-pretraining's VICReg ViT-S/16 on Imagenette
(LARS, see above), 200 epochs: 79.4% linear, 75.0% kNN
(benchmarks/imagenet10/RESULTS.md:26).
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

  c.model.encoder = "vit_small"
  c.model.patch_size = 16
  c.model.pool = "token"
  c.model.drop_path = 0.1
  c.model.expander_dims = (2048, 2048, 2048)

  c.pretrain.optimizer = "adamw"
  c.pretrain.adamw.base_lr = 5e-4
  c.pretrain.adamw.weight_decay = 0.05
  c.pretrain.batch_size = 1024
  c.pretrain.epochs = 100
  c.pretrain.warmup_epochs = 10
  c.pretrain.augmentation = "vicreg"
  c.pretrain.log_every_steps = 100
  c.pretrain.checkpoint_every_steps = 2500
  c.pretrain.knn_every_steps = 0
  c.eval_batch_size = 1024

  c.linear_probe.protocol = "official"
  c.linear_probe.epochs = 100
  c.linear_probe.batch_size = 256
  return c
