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
from vicreg_haiku.models import vit
from vicreg_haiku.utils import view_sizes

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


# Streams of the per-step keys, apart from init_key's (0, 1, 2).
_STEP_STREAMS = {"pretrain": 100, "finetune": 101, "supervised": 102}


def step_key(config: ml_collections.ConfigDict, phase: str,
             step: jax.Array) -> jax.Array | None:
  """The key a training step of `phase` draws drop-path from: folded from
  (seed, phase, step), so a resumed run draws what the first run drew. None
  where the model draws nothing (ResNets, drop_path 0): their programs stay
  as they were."""
  if not (is_vit(config) and config.model.drop_path > 0):
    return None
  return jax.random.fold_in(init_key(config.seed, _STEP_STREAMS[phase]), step)


RESNETS = {"resnet18": resnet.ResNet18, "resnet50": resnet.ResNet50}
VITS = {"vit_tiny": vit.ViTTiny, "vit_small": vit.ViTSmall,
        "vit_base": vit.ViTBase}
ENCODERS = {**RESNETS, **VITS}

# In utils, which the input pipeline shares (data/ cannot import models/);
# view_sizes.VIT_ENCODERS names VITS (tests/test_local_views.py).
is_vit = view_sizes.is_vit
patch_size = view_sizes.patch_size


# The config.model keys that only one family of encoders reads.
RESNET_SETTINGS = ("stem", "width")
VIT_SETTINGS = ("patch_size", "pool", "drop_path", "depth")


def ignored_settings(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The config.model keys the configured encoder does not read: the other
  family's settings (a ViT's are VIT_SETTINGS, a ResNet's RESNET_SETTINGS)."""
  return RESNET_SETTINGS if is_vit(config) else VIT_SETTINGS


def make_encoder(config: ml_collections.ConfigDict) -> hk.Module:
  """The configured encoder, named "encoder". A ViT's position embeddings
  are built for config.dataset.image_size."""
  model = config.model
  if is_vit(config):
    depth = {} if model.depth is None else {"depth": model.depth}
    return VITS[model.encoder](**depth, patch_size=patch_size(config),
                               image_size=config.dataset.image_size,
                               pool=model.pool, drop_path=model.drop_path,
                               name=ENCODER)
  return RESNETS[model.encoder](stem=model.stem, width=model.width,
                                name=ENCODER)


def pretrain_model(
    config: ml_collections.ConfigDict) -> hk.TransformedWithState:
  """(*views) -> (each view's embedding, encoder features of the first).

  The views pass separately, as in the official code, so each BatchNorm
  normalises each view's batch on its own statistics. A view of another
  size than dataset.image_size (a local view) passes as any image does: a
  ResNet takes any size, a ViT resamples its position embeddings.
  """

  def forward(*views, is_training=True):
    encoder = make_encoder(config)
    expander = heads.Expander(config.model.expander_dims, name=EXPANDER)
    features = [encoder(view, is_training) for view in views]
    return (tuple(expander(f, is_training) for f in features), features[0])

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
