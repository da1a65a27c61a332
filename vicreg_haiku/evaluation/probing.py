"""The linear probe phase: the pretrained encoder frozen, a linear head on it.

Probes the VICReg encoder and, as reference lines beside it, the same encoder
at random init and the raw pixels; each with every label and with each
budget of config.linear_probe.labels_per_class (N labels of every class, a
fixed pick per seed, the same examples for the three).

config.linear_probe.protocol picks how: "features" (features extracted once,
BatchNorm in inference mode, the head trained on them; fast, and what small
sets use) or "official" (official_probe.py: the official evaluate.py, the
VICReg encoder alone, SGD on augmented images for 100 epochs, as papers
report ImageNet linear top-1). A protocol is a function (config, workdir, mesh, encoder) ->
results entries, registered in _PROTOCOLS under its name (config_checks lists the
names a config may give); protocols share the result names below.
"""

import io
import os

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from vicreg_haiku.data import datasets
from vicreg_haiku.evaluation import features
from vicreg_haiku.evaluation import linear
from vicreg_haiku.evaluation import official_probe
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.models import transforms
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step

PHASE = "linear_probe"
# Result names of the three probes (budgets append _<N>_per_class).
ENCODERS = {"vicreg": PHASE, "random_init": "random_init_probe",
            "raw_pixels": "raw_pixels_probe"}
# The test features the embedding picture shows (results.py draws it).
EMBEDDING_FILE = "embedding.npz"
_EMBEDDING_EXAMPLES = 2000


def budgets(config: ml_collections.ConfigDict) -> tuple[int | None, ...]:
  """Labels per class of each probe: None (every label), then the budgets."""
  return (None,) + tuple(sorted(set(config.linear_probe.labels_per_class)))


def result_name(encoder: str, per_class: int | None) -> str:
  """results.json's key of a probe: linear_probe, raw_pixels_probe_10_per_class..."""
  name = ENCODERS[encoder]
  return name if per_class is None else f"{name}_{per_class}_per_class"


def random_init_encoder(config, mesh):
  """The pretraining's initial encoder, replicated as a restored one is."""
  model = transforms.pretrain_model(config)
  optimizer, _ = pretrain_step.make_optimizer(
      config, datasets.pretrain_steps_per_epoch(config))
  state = parallel.replicate(
      pretrain_step.init_state(config, model, optimizer), mesh)
  return state.params, state.net_state


def _probes(config, encoder: str, train, test) -> dict[str, dict]:
  """One encoder's probes, every label budget, keyed by result_name()."""
  (train_x, train_y), (test_x, test_y) = train, test
  results = {}
  for per_class in budgets(config):
    subset = (np.arange(len(train_y)) if per_class is None else
              linear.per_class_subset(train_y, per_class, config.seed))
    entry = linear.linear_probe(train_x[subset],
                                train_y[subset],
                                test_x,
                                test_y,
                                num_classes=datasets.num_classes(config),
                                probe=config.linear_probe,
                                seed=config.seed,
                                pad_to=len(train_y))
    results[result_name(encoder, per_class)] = dict(entry,
                                                    labels=len(subset))
  return results


def _write_embedding(config, workdir: str, features: dict[str, np.ndarray],
                     labels: np.ndarray) -> None:
  """Up to 2,000 test examples' features (a fixed pick) for embedding.png."""
  keep = np.arange(len(labels))
  if len(keep) > _EMBEDDING_EXAMPLES:
    keep = np.sort(np.random.default_rng(config.seed).choice(
        keep, _EMBEDDING_EXAMPLES, replace=False))
  if not parallel.is_chief():
    return
  directory = os.path.join(workdir, PHASE)
  tf.io.gfile.makedirs(directory)
  buffer = io.BytesIO()  # a zip needs seeking, which GFile cannot
  np.savez(buffer,
           labels=labels[keep],
           **{
               name: x[keep] for name, x in features.items()
           })
  with tf.io.gfile.GFile(os.path.join(directory, EMBEDDING_FILE), "wb") as f:
    f.write(buffer.getvalue())


def _features_protocol(config, workdir: str, mesh,
                       weights: transforms.Weights) -> dict[str, dict]:
  encoder = features.encoder_features(config)
  flatten = jax.jit(lambda images: images.reshape(images.shape[0], -1))
  apply_fns = {"vicreg": encoder(weights.params, weights.net_state),
               "random_init": encoder(*random_init_encoder(config, mesh)),
               "raw_pixels": flatten}
  splits = (config.dataset.train_split, config.dataset.test_split)
  results, test_features = {}, {}
  for encoder, apply_fn in apply_fns.items():
    train, test = (
        features.extract(config, apply_fn, split, mesh) for split in splits)
    results.update(_probes(config, encoder, train, test))
    if encoder != "raw_pixels":
      test_features[encoder] = test[0]
  results[PHASE]["encoder"] = weights.source
  _write_embedding(config, workdir, test_features, test[1])
  return results


_PROTOCOLS = {"features": _features_protocol,
              "official": official_probe.run}


def run(config: ml_collections.ConfigDict, workdir: str, mesh,
        imported: transforms.Weights | None = None) -> dict[str, dict]:
  """The probes of config.linear_probe.protocol; returns results entries.

  The encoder: the workdir's pretrained one, else `imported`
  (config.model.init_from).
  """
  weights = pretrained.pretrained_encoder(config, workdir, imported)
  return _PROTOCOLS[config.linear_probe.protocol](config, workdir, mesh,
                                                  weights)
