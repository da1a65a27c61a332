"""The Haiku transforms each phase trains, built from the config.

Every model names its encoder "encoder", so a pretrained encoder's params and
BN state drop into the probe, fine-tune and reuse models unchanged.
"""

from typing import NamedTuple

import haiku as hk
import jax
import ml_collections
import optax

from vicreg_haiku.models import heads
from vicreg_haiku.models import resnet

ENCODER = "encoder"
EXPANDER = "expander"


class TrainState(NamedTuple):
  step: jax.Array
  params: hk.Params
  net_state: hk.State
  opt_state: optax.OptState


class Weights(NamedTuple):
  """Params and BN state a phase starts from, and where they came from."""
  params: hk.Params
  net_state: hk.State
  source: str  # for results.json: a file, or "WORKDIR/pretrain step N"


def init_key(seed: int, stream: int) -> jax.Array:
  """The key a phase initialises its params from.

  RBG keys, because XLA:CPU compiles every threefry draw of a ResNet init
  separately and slowly (25 s against 6 s for a tiny ResNet-18 here); the
  draws are still a pure function of (seed, stream) on a given backend.
  """
  return jax.random.fold_in(jax.random.key(seed, impl="rbg"), stream)


ENCODERS = {"resnet18": resnet.ResNet18, "resnet50": resnet.ResNet50}


def make_encoder(config: ml_collections.ConfigDict) -> hk.Module:
  cls = ENCODERS[config.model.encoder]
  return cls(stem=config.model.stem, width=config.model.width, name=ENCODER)


def pretrain_model(
    config: ml_collections.ConfigDict) -> hk.TransformedWithState:
  """(view_a, view_b) -> (z_a, z_b, encoder features of view_a).

  The views pass separately, as in the official code, so each BatchNorm
  normalises each view's batch on its own statistics.
  """

  def forward(view_a, view_b, is_training=True):
    encoder = make_encoder(config)
    expander = heads.Expander(config.model.expander_dims, name=EXPANDER)
    features_a = encoder(view_a, is_training)
    z_a = expander(features_a, is_training)
    z_b = expander(encoder(view_b, is_training), is_training)
    return z_a, z_b, features_a

  return hk.transform_with_state(forward)


def classifier_model(config: ml_collections.ConfigDict,
                     num_classes: int) -> hk.TransformedWithState:
  """images -> logits: the encoder plus a linear head."""

  def forward(images, is_training):
    features = make_encoder(config)(images, is_training)
    return heads.LinearHead(num_classes)(features)

  return hk.transform_with_state(forward)


def feature_model(config: ml_collections.ConfigDict) -> hk.TransformedWithState:
  """images -> pooled encoder features, BatchNorm in inference mode."""
  return hk.transform_with_state(
      lambda images: make_encoder(config)(images, is_training=False))


def embedding_model(
    config: ml_collections.ConfigDict) -> hk.TransformedWithState:
  """images -> (encoder features, expander outputs), BatchNorm in inference
  mode (the pretraining's params: encoder and expander)."""

  def forward(images):
    features = make_encoder(config)(images, is_training=False)
    expander = heads.Expander(config.model.expander_dims, name=EXPANDER)
    return features, expander(features, is_training=False)

  return hk.transform_with_state(forward)


def encoder_part(tree: hk.Params) -> hk.Params:
  """The encoder's entries of a params or BN-state tree."""
  return hk.data_structures.filter(
      lambda module, name, value: module.split("/")[0] == ENCODER, tree)
