"""Loading a pretrained encoder from a workdir, for the later phases and users.

    from vicreg_haiku.evaluation import pretrained
    encoder = pretrained.load_encoder("/tmp/vicreg_digits")
    features = encoder(images)  # float32 [B, S, S, 3], normalised -> [B, F]

A run can also start from weights made elsewhere, config.model.init_from: a
.pth / .pt file (torch_weights.py) or another workdir's pretraining.
"""

import json
import os
from typing import Callable

import haiku as hk
import jax
import ml_collections
import numpy as np
import tensorflow as tf

from vicreg_haiku.evaluation import features
from vicreg_haiku.models import precision
from vicreg_haiku.models import torch_weights
from vicreg_haiku.models import transforms
from vicreg_haiku.training import checkpointing
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import defaults
from vicreg_haiku.utils import errors
from vicreg_haiku.utils import writers

CONFIG_FILE = "config.json"
# The config.model keys that fix the shapes of the encoder and expander
# (a ViT's patch_size as resolved by the image size).
_SHAPE_KEYS = ("encoder", "stem", "width", "expander_dims", "patch_size",
               "depth", "pool")


class MissingEncoderError(RuntimeError):
  pass


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise MissingEncoderError(f"{path} not found: not a vicreg-haiku workdir")
  with tf.io.gfile.GFile(path) as f:
    return ml_collections.ConfigDict(defaults.as_run_config(json.load(f)))


def _checkpoints(workdir: str) -> str:
  return os.path.join(workdir, pretrain_step.PHASE, "checkpoints")


def has_checkpoint(workdir: str) -> bool:
  """Whether `workdir` holds a pretraining checkpoint (a finished step)."""
  directory = _checkpoints(workdir)
  return tf.io.gfile.isdir(directory) and any(
      name.rstrip("/").isdigit() for name in tf.io.gfile.listdir(directory))


def restore_pretrained(config: ml_collections.ConfigDict, workdir: str
                       ) -> tuple[hk.Params, hk.State, int]:
  """Params and BN state (encoder and expander) of the newest pretraining
  checkpoint, and its step."""
  directory = _checkpoints(workdir)
  model = transforms.pretrain_model(config)
  # Only the optimizer state's structure matters here, which the schedule's
  # length does not change: no need to read the dataset's size.
  optimizer, _ = pretrain_step.make_optimizer(config, steps_per_epoch=1)
  replicated = parallel.replicated_sharding(parallel.make_mesh())
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
      jax.eval_shape(
          lambda: pretrain_step.init_state(config, model, optimizer)))
  state = None
  if tf.io.gfile.isdir(directory):
    state = checkpointing.restore_latest(checkpointing.manager(directory),
                                         target)
  if state is None:
    raise MissingEncoderError(
        f"no pretrained encoder in {directory}: run the pretrain phase first "
        "(--config.mode=pretrain or all)")
  return state.params, state.net_state, int(state.step)


def restore_encoder(config: ml_collections.ConfigDict, workdir: str
                    ) -> tuple[hk.Params, hk.State, int]:
  """The encoder params and BN state of the newest pretraining checkpoint."""
  params, net_state, step = restore_pretrained(config, workdir)
  return transforms.encoder_part(params), transforms.encoder_part(
      net_state), step


def import_init_from(config: ml_collections.ConfigDict) -> transforms.Weights:
  """config.model.init_from read and checked against config.model.

  A .pth / .pt file gives the encoder, and the expander when the file has a
  projector (torch_weights.from_torch); another workdir gives both, from its
  newest pretraining checkpoint. Arrays come replicated over the devices.
  """
  source = config.model.init_from
  if tf.io.gfile.isdir(source):
    params, net_state, step = _restore_other(config, source)
    described = f"{source}/pretrain step {step}"
  elif tf.io.gfile.exists(source):
    state_dict, part = torch_weights.unwrap(
        torch_weights.read_state_dict(source), source)
    if part and parallel.is_chief():
      writers.console(f"config.model.init_from={source}: {part}")
    params, net_state = torch_weights.from_torch(state_dict, config,
                                                 source=source)
    described = source
  else:
    raise MissingEncoderError(
        f"config.model.init_from={source!r}: no such file or workdir")
  replicated = parallel.replicate((params, net_state), parallel.make_mesh())
  return transforms.Weights(*replicated, described)


def _restore_other(config: ml_collections.ConfigDict, workdir: str):
  """Another workdir's pretrained params, if its networks are config's."""
  other = read_config(workdir)
  ours, theirs = _network(config), _network(other)
  for key in ours:  # "encoder" first: the other keys are of its family
    if ours[key] != theirs.get(key):
      raise torch_weights.WeightsError(
          f"config.model.{key}={ours[key]!r}, but config.model.init_from="
          f"{workdir} was pretrained with {theirs[key]!r}: set "
          f"--config.model.{key} to it")
  _check_position_grid(config, other, f"config.model.init_from={workdir}")
  return restore_pretrained(other, workdir)


def _network(config: ml_collections.ConfigDict) -> dict:
  """The config.model values of _SHAPE_KEYS the encoder reads (JSON's lists
  as tuples): a ViT's model.width is no part of its network."""
  values = {key: config.model[key] for key in _SHAPE_KEYS
            if key not in transforms.ignored_settings(config)}
  if transforms.is_vit(config):
    values["patch_size"] = transforms.patch_size(config)
  return {key: tuple(value) if isinstance(value, (list, tuple)) else value
          for key, value in values.items()}


def adopt_encoder_workdir(config: ml_collections.ConfigDict,
                          workdir: str) -> None:
  """config.linear_probe.encoder_workdir=DIR (transfer): the probe's encoder
  is DIR's newest pretraining, with DIR's network, on this config's data.

  Sets config.model's shape keys from DIR's config.json and
  config.model.init_from to DIR, so config.json records the network probed
  and results.json where it came from. Refuses, before anything is written,
  a DIR that is no workdir and combinations that would ignore it.
  """
  source = config.linear_probe.encoder_workdir
  if not source:
    return
  where = f"config.linear_probe.encoder_workdir={source}"
  if config.mode != "linear_probe":
    raise errors.ConfigError(
        f"{where} probes another workdir's encoder: use it with "
        "--config.mode=linear_probe (to start pretraining from it, set "
        "--config.model.init_from instead)")
  if config.model.init_from not in (None, source):
    raise errors.ConfigError(
        f"{where} and config.model.init_from={config.model.init_from} name "
        "two encoders: set one")
  if has_checkpoint(workdir):
    raise errors.ConfigError(
        f"{where}, but --workdir={workdir} holds its own pretraining, which "
        "a probe there uses: choose a new --workdir for the transfer")
  if not has_checkpoint(source):
    raise MissingEncoderError(
        f"{where}: no pretraining checkpoint in {_checkpoints(source)}")
  other = read_config(source)
  for key, value in _network(other).items():
    config.model[key] = value
  _check_position_grid(config, other, where)
  config.model.init_from = source


def _check_position_grid(config: ml_collections.ConfigDict,
                         other: ml_collections.ConfigDict, where: str) -> None:
  """A ViT's restored position embeddings fit this config's images: the
  patch grid of dataset.image_size is the other run's (a .pth file is
  resampled on import instead, torch_weights)."""
  if not transforms.is_vit(other):
    return
  size = other.dataset.image_size
  if config.dataset.image_size // transforms.patch_size(config) != (
      size // transforms.patch_size(other)):
    raise errors.ConfigError(
        f"{where} is a ViT built for {size} px images, whose position "
        f"embeddings do not fit config.dataset.image_size="
        f"{config.dataset.image_size}: set --config.dataset.image_size="
        f"{size}")


def pretrained_encoder(
    config: ml_collections.ConfigDict, workdir: str,
    imported: transforms.Weights | None) -> transforms.Weights:
  """The encoder a probe or fine-tune starts from: `workdir`'s newest
  pretraining checkpoint, else the `imported` one (config.model.init_from)."""
  if imported is None or has_checkpoint(workdir):
    params, net_state, step = restore_encoder(config, workdir)
    return transforms.Weights(params, net_state,
                              f"{workdir}/pretrain step {step}")
  return transforms.Weights(transforms.encoder_part(imported.params),
                            transforms.encoder_part(imported.net_state),
                            imported.source)


def load_encoder(workdir: str) -> Callable[[np.ndarray], np.ndarray]:
  """A jitted `features = encoder(images)` from a pretraining workdir.

  Images are float32 [B, S, S, 3], normalised as the run's recipe does
  (config.json: augmentations.<name>.mean/std); BatchNorm in inference mode.
  """
  config = read_config(workdir)
  precision.set_compute_dtype(config.precision)
  params, net_state, _ = restore_encoder(config, workdir)
  return features.encoder_features(config)(params, net_state)
