"""Loading a pretrained encoder from a workdir, for the later phases and users.

    from vicreg_haiku import pretrained
    encoder = pretrained.load_encoder("/tmp/vicreg_digits")
    features = encoder(images)  # float32 [B, S, S, 3], normalised -> [B, F]
"""

import json
import os
from typing import Callable

import haiku as hk
import jax
import ml_collections
import numpy as np
import tensorflow as tf

from vicreg_haiku import checkpointing
from vicreg_haiku import datasets
from vicreg_haiku import evaluation
from vicreg_haiku import models
from vicreg_haiku import parallel
from vicreg_haiku import precision
from vicreg_haiku import pretrain_step
from vicreg_haiku import pretraining

CONFIG_FILE = "config.json"


class MissingEncoderError(RuntimeError):
  pass


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise MissingEncoderError(f"{path} not found: not a vicreg-haiku workdir")
  with tf.io.gfile.GFile(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_encoder(config: ml_collections.ConfigDict, workdir: str
                    ) -> tuple[hk.Params, hk.State, int]:
  """The encoder params and BN state of the newest pretraining checkpoint."""
  directory = os.path.join(workdir, pretraining.PHASE, "checkpoints")
  model = models.pretrain_model(config)
  optimizer, _ = pretrain_step.make_optimizer(
      config, datasets.pretrain_steps_per_epoch(config))
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
  return (models.encoder_part(state.params),
          models.encoder_part(state.net_state), int(state.step))


def load_encoder(workdir: str) -> Callable[[np.ndarray], np.ndarray]:
  """A jitted `features = encoder(images)` from a pretraining workdir.

  Images are float32 [B, S, S, 3], normalised as the run's recipe does
  (config.json: augmentations.<name>.mean/std); BatchNorm in inference mode.
  """
  config = read_config(workdir)
  precision.set_compute_dtype(config.precision)
  params, net_state, _ = restore_encoder(config, workdir)
  return evaluation.encoder_features(config)(params, net_state)
