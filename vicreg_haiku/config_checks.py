"""Config validation before any data is read or anything compiled.

Every error is one line naming the key, the value and what is allowed.
"""

import difflib
from typing import Collection

import ml_collections

from vicreg_haiku.data import device_augmentations
from vicreg_haiku.models import precision
from vicreg_haiku.models import transforms
from vicreg_haiku.models import vit
from vicreg_haiku.utils import defaults
from vicreg_haiku.utils import errors
from vicreg_haiku.utils import view_sizes

MODES = ("all", "pretrain", "linear_probe", "finetune", "supervised")
ENCODERS = tuple(transforms.ENCODERS)
OPTIMIZERS = ("auto", "lars", "adamw")
STEMS = ("imagenet", "cifar")
LOSSES = ("vicreg", "sigreg")
# probing._PROTOCOLS holds one function for each.
PROBE_PROTOCOLS = ("features", "official")


def unknown_key(config: ml_collections.ConfigDict, dotted: str) -> str | None:
  """Why `dotted` (e.g. "pretrain.batchsize") names no key of `config`, with
  the keys that do exist where it stops; None when it names one."""
  node, where = config, "config"
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict):
      return f"{where} is a value ({node!r}), not a section with keys"
    if part not in node:
      keys = sorted(node.keys())
      close = difflib.get_close_matches(part, keys, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      return (f"{where} has no key {part!r}{hint}; its keys: "
              f"{', '.join(keys)}")
    node, where = node[part], f"{where}.{part}"
  return None


def _families(config: ml_collections.ConfigDict
              ) -> tuple[str, tuple[str, ...], str]:
  """(the configured encoder's family, the model keys it reads that the
  other does not, the other family)."""
  if transforms.is_vit(config):
    return "ViT", transforms.VIT_SETTINGS, "ResNet"
  return "ResNet", transforms.RESNET_SETTINGS, "ViT"


def refuse_ignored_overrides(config: ml_collections.ConfigDict,
                             overridden: Collection[str]) -> None:
  """Raises ConfigError when the command line (`overridden`: its dotted
  keys) sets a setting the encoder ignores, e.g. --config.model.width with a
  ViT: whoever sets one expects it to act. A config file's values for its
  own encoder are not refused (unused_settings says them)."""
  family, own, other = _families(config)
  for key in transforms.ignored_settings(config):
    if f"model.{key}" in overridden:
      raise errors.ConfigError(
          f"--config.model.{key}={config.model[key]!r} is a {other} setting, "
          f"and config.model.encoder={config.model.encoder!r} is a {family}: "
          f"drop it (a {family} takes "
          f"{', '.join(f'model.{k}' for k in own)})")


def unused_settings(config: ml_collections.ConfigDict) -> str | None:
  """A line naming the settings the encoder ignores that the config sets to
  other than their defaults (a config file's values for its ResNet when the
  command line picks a ViT, or the reverse); None when there are none."""
  default = defaults.base_config().model
  unused = [f"model.{key}={config.model[key]}"
            for key in transforms.ignored_settings(config)
            if config.model[key] != default[key]]
  if not unused:
    return None
  other = _families(config)[2]
  kind = f"{other} settings" if len(unused) > 1 else f"a {other} setting"
  return f"{', '.join(unused)}: {kind}, unused by {config.model.encoder}"


def leaves(tree, prefix: str = ""):
  """(dotted key, value) of every value below `tree` (a dict or ConfigDict)."""
  for key, value in tree.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def apply_vit_defaults(config: ml_collections.ConfigDict,
                       overridden: Collection[str]) -> str | None:
  """Resolves config.vit_defaults, a config file's settings for a ViT (e.g.
  configs/digits.py's: its ResNet recipe does not train a ViT on small data).

  With a ViT, sets each of its keys (paths into the config, e.g.
  "pretrain.epochs") to its value, except the keys the command line
  (`overridden`: its dotted keys) set: those win. With a ResNet, sets none.
  Removes the block either way, so config.json records what the run used,
  and a ResNet run's config is what the file's is without it. Returns the
  line saying what was set; None when nothing was.
  """
  if "vit_defaults" not in config:  # resolved already
    return None
  block = dict(leaves(config.vit_defaults))
  with config.unlocked():
    del config.vit_defaults
  # Checked for a ResNet too: a config file's typo shows on its first run.
  for key in block:
    problem = unknown_key(config, key)
    if problem:
      raise errors.ConfigError(f"config.vit_defaults.{key}: {problem}")
  if not transforms.is_vit(config):
    return None
  applied = []
  for key, value in block.items():
    if key in overridden:
      continue
    *sections, field = key.split(".")
    node = config
    for section in sections:
      node = node[section]
    try:
      node[field] = value
    except TypeError as error:
      raise errors.ConfigError(
          f"config.vit_defaults.{key}={value!r}: {error}") from None
    applied.append(f"{key}={value}")
  if not applied:
    return None
  return (f"{config.model.encoder} on this config's ViT defaults (vit_defaults;"
          f" the command line's values win): {', '.join(applied)}")


def _choice(key: str, value, allowed) -> None:
  if value not in allowed:
    raise errors.ConfigError(f"config.{key}={value!r} is not one of {allowed}")


def _positive(key: str, value, *, zero_ok: bool = False) -> None:
  if value is None or value < 0 or (value == 0 and not zero_ok):
    kind = "non-negative" if zero_ok else "positive"
    raise errors.ConfigError(f"config.{key}={value!r} must be {kind}")


def _probability(key: str, values) -> None:
  for value in values if isinstance(values, (tuple, list)) else (values,):
    if not 0.0 <= value <= 1.0:
      raise errors.ConfigError(
          f"config.{key}={values!r}: probabilities lie in [0, 1]")


def _crop_scale(key: str, value) -> None:
  if not (isinstance(value, (tuple, list)) and len(value) == 2
          and 0 < value[0] <= value[1] <= 1):
    raise errors.ConfigError(f"config.{key}={value!r} must be (low, high) "
                             "with 0 < low <= high <= 1")


def _check_views(name: str, views: ml_collections.ConfigDict) -> None:
  key = f"augmentations.{name}"
  for field in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob",
                "solarize_prob", "local_blur_prob", "local_solarize_prob"):
    _probability(f"{key}.{field}", views[field])
  _crop_scale(f"{key}.crop_scale", views.crop_scale)
  _choice(f"{key}.interpolation", views.interpolation, ("bilinear", "bicubic"))
  size = views.blur_kernel_size
  if size < 0 or (size and size % 2 == 0):
    # torchvision's GaussianBlur refuses even sizes too: an even kernel has
    # no centre tap, so it shifts the image by half a pixel.
    raise errors.ConfigError(
        f"config.{key}.blur_kernel_size={size!r} must be a positive odd "
        "number, as torchvision's (or 0: one that holds 3 sigma of the "
        "largest blur_sigma)")


def _check_official_probe(probe: ml_collections.ConfigDict) -> None:
  if probe.labels_per_class:
    raise errors.ConfigError(
        f"config.linear_probe.labels_per_class={probe.labels_per_class!r}: "
        "label budgets are probes of protocol='features'; the official "
        "protocol trains one head on every label (set it to ())")
  for field in ("learning_rate", "weight_decay", "momentum"):
    _positive(f"linear_probe.official.{field}", probe.official[field],
              zero_ok=True)
  _crop_scale("linear_probe.official.crop_scale", probe.official.crop_scale)


def _check_vit(config: ml_collections.ConfigDict) -> None:
  model, size = config.model, config.dataset.image_size
  if model.patch_size is None and transforms.patch_size(config) is None:
    raise errors.ConfigError(
        f"config.dataset.image_size={size}: no patch size of 16, 8, 4 or 2 "
        "cuts it into at least 8 x 8 patches; set --config.model.patch_size")
  if model.patch_size is not None:
    _positive("model.patch_size", model.patch_size)
  patch = transforms.patch_size(config)
  if model.depth is not None:
    _positive("model.depth", model.depth)
  _choice("model.pool", model.pool, vit.POOLS)
  if size % patch:
    raise errors.ConfigError(
        f"config.dataset.image_size={size} is not a multiple of "
        f"config.model.patch_size={patch}: a ViT cuts the image "
        "into whole patches; use e.g. patch 16 at 224 px, 8 or 4 at 32-96 px")
  if not 0 <= model.drop_path < 1:
    raise errors.ConfigError(
        f"config.model.drop_path={model.drop_path!r} must lie in [0, 1) "
        "(the stochastic-depth rate of the last block, e.g. 0.1)")


def _check_local_views(config: ml_collections.ConfigDict) -> None:
  p, image_size = config.pretrain, config.dataset.image_size
  _positive("pretrain.local_views", p.local_views, zero_ok=True)
  _crop_scale("pretrain.local_crop_scale", p.local_crop_scale)
  if not (p.local_views or p.local_size is not None):
    return
  size = view_sizes.local_size(config)
  if not 0 < size <= image_size:
    raise errors.ConfigError(
        f"config.pretrain.local_size={size!r} must lie in [1, "
        f"{image_size}] (config.dataset.image_size): local views are the "
        "small ones, e.g. 96 beside 224")
  patch = transforms.patch_size(config)
  if transforms.is_vit(config) and size % patch:
    raise errors.ConfigError(
        f"config.pretrain.local_size={size} is not a multiple of "
        f"config.model.patch_size={patch}: a ViT cuts every view into whole "
        f"patches; use e.g. {max(patch, size // patch * patch)}")


def _check_optimizer(p: ml_collections.ConfigDict) -> None:
  _choice("pretrain.optimizer", p.optimizer, OPTIMIZERS)
  for field in ("base_lr", "weight_decay", "b1", "b2"):
    _positive(f"pretrain.adamw.{field}", p.adamw[field], zero_ok=True)
  for field in ("b1", "b2"):
    if p.adamw[field] >= 1:
      raise errors.ConfigError(
          f"config.pretrain.adamw.{field}={p.adamw[field]!r} must be below 1 "
          "(a moment's decay, e.g. 0.9 / 0.999)")
  if p.adamw.weight_decay_end is not None:
    _positive("pretrain.adamw.weight_decay_end", p.adamw.weight_decay_end,
              zero_ok=True)
  if p.clip_grad_norm is not None:
    _positive("pretrain.clip_grad_norm", p.clip_grad_norm)


def _check_loss(loss: ml_collections.ConfigDict) -> None:
  _choice("loss.name", loss.name, LOSSES)
  sig = loss.sigreg
  if not 0 <= sig.lambd <= 1:
    raise errors.ConfigError(
        f"config.loss.sigreg.lambd={sig.lambd!r} must lie in [0, 1]: SIGReg's "
        "weight, the prediction term's is 1 - lambd (LeJEPA: 0.05)")
  _positive("loss.sigreg.slices", sig.slices)
  _positive("loss.sigreg.t_max", sig.t_max)
  if not isinstance(sig.knots, int) or sig.knots < 2:
    raise errors.ConfigError(
        f"config.loss.sigreg.knots={sig.knots!r} must be an int >= 2: the "
        "Epps-Pulley integral's points on [0, t_max] (LeJEPA: 17)")


def validate(config: ml_collections.ConfigDict, device_count: int) -> None:
  """Raises ConfigError on the first bad value."""
  _choice("mode", config.mode, MODES)
  _choice("precision", config.precision, precision.PRECISIONS)
  _choice("model.encoder", config.model.encoder, ENCODERS)
  _choice("model.stem", config.model.stem, STEMS)
  if transforms.is_vit(config):
    _check_vit(config)
  _check_optimizer(config.pretrain)
  _check_loss(config.loss)
  _choice("pretrain.augmentation", config.pretrain.augmentation,
          tuple(config.augmentations.keys()))
  _choice("pretrain.augment_on", config.pretrain.augment_on,
          device_augmentations.AUGMENT_ON)
  _positive("pretrain.canvas_size", config.pretrain.canvas_size, zero_ok=True)
  _check_local_views(config)
  _positive("dataset.image_size", config.dataset.image_size)
  if not 0 < config.dataset.held_out_fraction < 1:
    raise errors.ConfigError(
        f"config.dataset.held_out_fraction={config.dataset.held_out_fraction!r}"
        ": a fraction in (0, 1) of every class to score on, e.g. 0.1")
  _positive("dataset.in_memory_max_gb", config.dataset.in_memory_max_gb,
            zero_ok=True)
  if config.dataset.name == "folder" and not config.dataset.folder:
    raise errors.ConfigError(
        "config.dataset.name='folder' needs "
        "--config.dataset.folder=ROOT (a local path or gs://)")
  _positive("model.width", config.model.width)
  for index, dim in enumerate(config.model.expander_dims):
    _positive(f"model.expander_dims[{index}]", dim)
  batch_keys = ["pretrain.batch_size", "finetune.batch_size",
                "supervised.batch_size", "linear_probe.batch_size",
                "eval_batch_size"]
  for key in batch_keys:
    section, _, field = key.rpartition(".")
    value = (config[section] if section else config)[field]
    _positive(key, value)
    # The features protocol batches host arrays; every other batch is
    # sharded over the devices.
    sharded = (key != "linear_probe.batch_size"
               or config.linear_probe.protocol == "official")
    if sharded and value % device_count:
      raise errors.ConfigError(
          f"config.{key}={value} does not divide over {device_count} devices;"
          f" use a multiple of {device_count}")
  for phase in ("pretrain", "finetune", "supervised", "linear_probe"):
    _positive(f"{phase}.epochs", config[phase].epochs)
  for phase in ("finetune", "supervised"):
    _choice(f"{phase}.optimizer", config[phase].optimizer,
            ("auto", "sgd", "adamw"))
    for field in ("lr_backbone", "lr_head", "weight_decay"):
      _positive(f"{phase}.adamw.{field}", config[phase].adamw[field],
                zero_ok=True)
    fraction = config[phase].label_fraction
    if fraction is None or not 0 < fraction <= 1:
      raise errors.ConfigError(
          f"config.{phase}.label_fraction={fraction!r} must lie in (0, 1]: "
          "the fraction of every class's labels the phase trains on")
  _positive("pretrain.warmup_epochs", config.pretrain.warmup_epochs,
            zero_ok=True)
  if config.pretrain.base_lr is not None:
    _positive("pretrain.base_lr", config.pretrain.base_lr, zero_ok=True)
  for key in ("pretrain.weight_decay",
              "pretrain.trust_coefficient", "finetune.lr_backbone",
              "finetune.lr_head", "supervised.lr_backbone",
              "supervised.lr_head", "linear_probe.learning_rate",
              "pretrain.neighbour_images"):
    section, field = key.split(".")
    _positive(key, config[section][field], zero_ok=True)
  for key in ("pretrain.max_steps", "pretrain.log_every_steps",
              "pretrain.rankme_every_steps", "finetune.log_every_steps",
              "supervised.log_every_steps"):
    section, field = key.split(".")
    if config[section][field] is not None:  # None: derived from the length
      _positive(key, config[section][field])
  if config.pretrain.knn_every_steps is not None:
    _positive("pretrain.knn_every_steps", config.pretrain.knn_every_steps,
              zero_ok=True)
  _choice("linear_probe.protocol", config.linear_probe.protocol,
          PROBE_PROTOCOLS)
  budgets = config.linear_probe.labels_per_class
  if not all(isinstance(n, int) and n > 0 for n in budgets):
    raise errors.ConfigError(
        f"config.linear_probe.labels_per_class={budgets!r} must be a tuple of "
        "positive ints, labels per class of each extra probe, e.g. (1, 10)")
  if config.linear_probe.protocol == "official":
    _check_official_probe(config.linear_probe)
  for name, views in config.augmentations.items():
    _check_views(name, views)
