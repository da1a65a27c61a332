"""The config schema every study shares; `configs/*.py` start from it.

Every key a phase reads is here with its default, so `--config.KEY=VALUE`
works for all of them and an unknown key is refused by ml_collections.
"""

import json

from ml_collections import config_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vicreg_views() -> config_dict.ConfigDict:
  """The official VICReg recipe (asymmetric blur and solarisation).

  Pairs are (view 1, view 2).
  """
  return config_dict.ConfigDict(dict(
      crop_scale=(0.08, 1.0),
      crop_ratio=(3 / 4, 4 / 3),
      interpolation="bicubic",
      flip_prob=0.5,
      rotation_degrees=0.0,
      jitter_prob=0.8,
      brightness=0.4,
      contrast=0.4,
      saturation=0.2,
      hue=0.1,
      grayscale_prob=0.2,
      blur_prob=(1.0, 0.1),
      blur_sigma=(0.1, 2.0),
      # 0: a kernel that holds 3 sigma of the largest sigma (PIL's blur,
      # the official one, has no kernel size; augmentations.py says how far
      # our exact Gaussian is from it). Otherwise odd, as torchvision's.
      blur_kernel_size=0,
      solarize_prob=(0.0, 0.2),
      # The local views' (pretrain.local_views) blur and solarisation, the
      # rest as the global views': DINO's local crops (facebookresearch/dino,
      # main_dino.py DataAugmentationDINO: flip, jitter p 0.8, grayscale
      # p 0.2, blur p 0.5, no solarisation). VICRegL's MultiCropTrainData-
      # Transform instead alternates the two global views' (1.0, 0.0) and
      # (0.1, 0.2) over its local crops.
      local_blur_prob=0.5,
      local_solarize_prob=0.0,
      mean=IMAGENET_MEAN,
      std=IMAGENET_STD,
  ))


def seed_views() -> config_dict.ConfigDict:
  """The original notebook's torchvision recipe (symmetric, 9x9 blur)."""
  return config_dict.ConfigDict(dict(
      crop_scale=(0.08, 1.0),
      crop_ratio=(3 / 4, 4 / 3),
      interpolation="bilinear",
      flip_prob=0.5,
      rotation_degrees=0.0,
      jitter_prob=0.8,
      brightness=0.5,
      contrast=0.5,
      saturation=0.5,
      hue=0.1,
      grayscale_prob=0.2,
      blur_prob=(1.0, 1.0),
      blur_sigma=(0.1, 2.0),
      blur_kernel_size=9,
      solarize_prob=(0.0, 0.0),
      local_blur_prob=0.5,  # as vicreg_views'
      local_solarize_prob=0.0,
      mean=(0.5, 0.5, 0.5),
      std=(0.5, 0.5, 0.5),
  ))


def classifier_training(**learning) -> config_dict.ConfigDict:
  """An encoder + linear head trained end to end on the labelled split."""
  return config_dict.ConfigDict(dict(
      epochs=100,
      batch_size=256,
      # sgd | adamw | auto: SGD for ResNets, AdamW for ViTs.
      optimizer="auto",
      momentum=0.9,  # SGD with momentum, cosine decay to 0
      augment=True,  # random resized crop + flip on the labelled split
      crop_scale=(0.08, 1.0),
      log_every_steps=config_dict.placeholder(int),  # None: ~100 a run
      checkpoint_every_steps=1000,
      skip_nonfinite=False,
      # Semi-supervised: train on this fraction of every class of the train
      # split (a fixed pick per seed, the same for both phases), e.g. 0.01.
      label_fraction=1.0,
      # Train on this tfds dataset's train split instead ("": dataset.name's)
      # and test on dataset.name's test split, e.g. imagenet2012_subset/1pct.
      train_dataset="",
      # AdamW's rates (DeiT: 5e-4 x batch / 512 at batch 256, wd 0.05);
      # the SGD rates are the phase's own lr_backbone, lr_head, weight_decay.
      adamw=config_dict.ConfigDict(dict(
          lr_backbone=2.5e-4, lr_head=2.5e-4, weight_decay=0.05)),
      **learning,
  ))


def base_config() -> config_dict.ConfigDict:
  """Defaults of every key; a study's config overrides what differs."""
  c = config_dict.ConfigDict()
  c.mode = "all"  # all | pretrain | linear_probe | finetune | supervised
  c.seed = 0
  c.precision = "float32"  # compute dtype: float32 | bfloat16
  c.distributed = False  # call jax.distributed.initialize() (multi-host)
  c.eval_batch_size = 256  # feature extraction and test passes
  # A workdir refuses a run of another config unless this is set.
  c.allow_config_change = False

  c.dataset = config_dict.ConfigDict(dict(
      # digits | folder | any tfds image-classification name (stl10, cifar10,
      # imagenet2012, imagenette, food101, ...): see vicreg_haiku/data/sources.py.
      name="digits",
      data_dir=config_dict.placeholder(str),  # tfds data_dir; may be gs://
      # tfds datasets prepared from files you download (imagenet2012).
      manual_dir=config_dict.placeholder(str),
      # name="folder": ROOT (local or gs://); splits are paths below it.
      folder=config_dict.placeholder(str),
      # Where a folder's index is kept (None: ROOT/.vicreg_haiku_index).
      index_dir=config_dict.placeholder(str),
      # Keep only these classes: "imagenet100", a file of names, or "a,b,c".
      classes="",
      # A split is decoded into host memory when its images share one shape
      # and a process's share fits in this many GiB; else streamed.
      in_memory_max_gb=4.0,
      image_size=16,
      pretrain_split="train",  # tfds split syntax, e.g. "unlabelled+train"
      train_split="train",
      test_split="test",
      # When train_split and test_split name one labelled split, this
      # fraction of every class is held out to be scored on (sources.py).
      held_out_fraction=0.1,
  ))

  c.model = config_dict.ConfigDict(dict(
      # resnet18 | resnet50 | vit_tiny | vit_small | vit_base
      encoder="resnet18",
      stem="cifar",  # ResNets: imagenet | cifar
      width=64,  # ResNets: channels of the first stage
      # ViTs: pixels per patch side; None: by the image size (16 at 224 px,
      # 8 at 96, 4 at 32, 2 at 16: transforms.patch_size).
      patch_size=config_dict.placeholder(int),
      pool="token",  # ViTs: token (the class token, timm's) | mean
      drop_path=0.0,  # ViTs: stochastic depth, rising to this at the end
      # ViTs: the number of blocks; None: the encoder's (12, as timm's).
      depth=config_dict.placeholder(int),
      expander_dims=(8192, 8192, 8192),
      # Start from these weights: a .pth / .pt state_dict (torchvision,
      # official VICReg, timm or DINO layout, models/torch_weights.py) or
      # another workdir. Pretraining starts from its encoder (and expander,
      # if it has one); a probe or fine-tune without pretraining here uses
      # its encoder.
      init_from=config_dict.placeholder(str),
  ))

  c.loss = config_dict.ConfigDict(dict(
      # vicreg | sigreg (LeJEPA: training/losses.py, lejepa_loss).
      name="vicreg",
      # VICReg's coefficients (the official defaults).
      sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4,
      # LeJEPA: (1 - lambd) * prediction + lambd * SIGReg (the paper's
      # Algorithm 2 and recommended 0.05); SIGReg over `slices` random
      # directions drawn each step, the Epps-Pulley integral on `knots`
      # points of [0, t_max] (the reference code's defaults: t_max 3, 17
      # knots, 1024 slices; the paper's listing integrates over [-5, 5]).
      sigreg=config_dict.ConfigDict(dict(
          lambd=0.05, slices=1024, t_max=3.0, knots=17)),
  ))

  c.pretrain = config_dict.ConfigDict(dict(
      batch_size=256,
      epochs=100,
      max_steps=config_dict.placeholder(int),
      # lars | adamw | auto: LARS for ResNets, AdamW for ViTs.
      optimizer="auto",
      # LARS (the official VICReg recipe):
      base_lr=0.2,  # peak lr = base_lr * batch_size / 256
      warmup_epochs=10,  # both optimizers
      weight_decay=1e-6,
      momentum=0.9,
      trust_coefficient=0.001,
      # AdamW (VICRegL's main_vicregl.py: lr 5e-4 x batch / 256, wd 0.05);
      # no decay on biases, norms, and (timm's) pos_embed and cls_token.
      # weight_decay_end: None, or a cosine from weight_decay to it (DINO's
      # wd schedule).
      adamw=config_dict.ConfigDict(dict(
          base_lr=5e-4, weight_decay=0.05,
          weight_decay_end=config_dict.placeholder(float), b1=0.9, b2=0.999)),
      # None, or clip the global gradient norm to this (torch's
      # clip_grad_norm_), with either optimizer.
      clip_grad_norm=config_dict.placeholder(float),
      augmentation="vicreg",  # vicreg | seed: picks c.augmentations[name]
      # Where the views are made: "host" (all in tf.data) or "device" (the
      # host decodes onto a canvas and draws; crop, resize, flip and colour
      # run in the jitted step, Pillow-exact, so accelerator hosts are not
      # input-bound); "auto": device on a GPU or TPU, host on a CPU, and a
      # resumed run keeps what its config.json records.
      augment_on="auto",
      # The device path's square canvas side in pixels; 0: by the split
      # (its images' size, or the 95th percentile of their longer sides;
      # 512 when unknown). Longer images are reduced on the host first.
      canvas_size=0,
      # Multi-crop: this many small "local" views of every image beside the
      # two global ones (LeJEPA: 6 at 96 px beside 224 px; 0: two views).
      local_views=0,
      # Their side; None: round(image_size * 96 / 224), for a ViT rounded
      # down to a multiple of the patch (utils/view_sizes.local_size).
      local_size=config_dict.placeholder(int),
      local_crop_scale=(0.05, 0.3),  # their crops' area, as crop_scale's
      # metrics.jsonl / TensorBoard cadence; None: about 100 points a run.
      log_every_steps=config_dict.placeholder(int),
      checkpoint_every_steps=1000,
      checkpoint_every_seconds=600,
      # The monitors run at log steps that are multiples of these.
      # 0: at the end only; None: about 10 a run.
      knn_every_steps=config_dict.FieldReference(0, field_type=int),
      knn_k=20,
      knn_temperature=0.07,
      rankme_every_steps=config_dict.placeholder(int),  # None: ~20 a run
      rankme_examples=1024,  # fixed batch for the RankMe effective rank
      # neighbours.png when pretraining ends: 8 queries' nearest images
      # among up to this many of the pretraining split (a fixed pick); 0: none.
      neighbour_images=20000,
      skip_nonfinite=False,  # True: skip non-finite steps instead of stopping
      # Collapse watch: warn at log steps when >= collapse_fraction of the
      # expander's output dimensions have a batch std below collapse_std.
      collapse_std=0.01,
      collapse_fraction=0.9,
  ))

  c.augmentations = config_dict.ConfigDict(dict(
      vicreg=vicreg_views(), seed=seed_views()))

  c.linear_probe = config_dict.ConfigDict(dict(
      epochs=100,
      batch_size=256,
      learning_rate=0.01,  # Adam on standardised frozen features
      weight_decay=1e-4,
      # Every probe runs with all labels and with N labels of every class
      # for each N here (a fixed pick per seed), e.g. (1, 5, 10, 50).
      labels_per_class=(),
      # Transfer: probe the encoder pretrained in this other workdir (its
      # network, this config's data); with mode=linear_probe, a new workdir.
      encoder_workdir="",
      # features: frozen features extracted once, head on them (Adam, the
      # settings above); official: evaluate.py's, the settings below.
      protocol="features",
      skip_nonfinite=False,  # the official protocol's steps, as pretrain's
      official=config_dict.ConfigDict(dict(
          learning_rate=0.02,  # SGD, the official README's linear-eval lr
          weight_decay=1e-6,  # on the head's weight and bias
          momentum=0.9,
          crop_scale=(0.08, 1.0),  # training images' random resized crop
      )),
  ))

  # Fine-tune starts from the pretrained encoder, supervised from random
  # init; same budget and recipe, so the two differ only in the start.
  c.finetune = classifier_training(lr_backbone=0.01, lr_head=0.1,
                                   weight_decay=1e-6)
  c.supervised = classifier_training(lr_backbone=0.1, lr_head=0.1,
                                     weight_decay=1e-4)

  # A config file's settings for a ViT, nested as the config (e.g.
  # vit_defaults.pretrain.epochs): set when model.encoder is a ViT, unless
  # the command line sets them; removed before a run either way
  # (config_checks.apply_vit_defaults). Empty: a ViT runs on the file's own.
  c.vit_defaults = config_dict.ConfigDict()
  return c


# Keys added after runs were written whose default is not what those runs
# did: the value an older config.json means by leaving the key out.
OLDER_RUN_VALUES = {"pretrain": {"augment_on": "host"}}


def _merged(base: dict, over: dict) -> dict:
  merged = dict(base)
  for key, value in over.items():
    if isinstance(value, dict) and isinstance(merged.get(key), dict):
      value = _merged(merged[key], value)
    merged[key] = value
  return merged


def as_run_config(recorded: dict) -> dict:
  """A run's config.json, written by this version or an older one, as a
  whole config: a key the older version lacked at the value it ran with
  (its default here, or OLDER_RUN_VALUES')."""
  return _merged(_merged(json.loads(base_config().to_json()),
                         OLDER_RUN_VALUES), recorded)
