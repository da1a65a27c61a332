"""The linear probe phase: frozen encoder, features extracted once.

Probes the VICReg encoder and, as reference lines beside it, the same encoder
at random init and the raw pixels; each with every label and, when
config.linear_probe.labels_per_class > 0, with that many labels per class.
"""

import jax
import ml_collections

from vicreg_haiku import datasets
from vicreg_haiku import evaluation
from vicreg_haiku import models
from vicreg_haiku import pretrain_step
from vicreg_haiku import pretrained

PHASE = "linear_probe"


def _random_init_encoder(config):
  model = models.pretrain_model(config)
  optimizer, _ = pretrain_step.make_optimizer(
      config, datasets.pretrain_steps_per_epoch(config))
  state = pretrain_step.init_state(config, model, optimizer)
  return state.params, state.net_state


def _probe(config, name: str, train, test) -> dict[str, dict]:
  """Probe results for all labels and the label budget, keyed by name."""
  settings = config.linear_probe
  num_classes = datasets.num_classes(config)
  (train_x, train_y), (test_x, test_y) = train, test
  results = {name: {"top1": evaluation.linear_probe_top1(
      train_x, train_y, test_x, test_y, num_classes=num_classes,
      probe=settings, seed=config.seed), "labels": len(train_y)}}
  if settings.labels_per_class > 0:
    subset = evaluation.per_class_subset(train_y, settings.labels_per_class,
                                         config.seed)
    results[f"{name}_{settings.labels_per_class}_per_class"] = {
        "top1": evaluation.linear_probe_top1(
            train_x[subset], train_y[subset], test_x, test_y,
            num_classes=num_classes, probe=settings, seed=config.seed),
        "labels": len(subset)}
  return results


def run(config: ml_collections.ConfigDict, workdir: str, mesh,
        imported: models.Weights | None = None) -> dict[str, dict]:
  encoder = pretrained.pretrained_encoder(config, workdir, imported)
  features = evaluation.encoder_features(config)
  splits = (config.dataset.train_split, config.dataset.test_split)
  encoders = {PHASE: (encoder.params, encoder.net_state),
              "random_init_probe": _random_init_encoder(config)}
  results = {}
  for name, (p, s) in encoders.items():
    train, test = (evaluation.extract(config, features(p, s), split, mesh)
                   for split in splits)
    results.update(_probe(config, name, train, test))
  results[PHASE]["encoder"] = encoder.source
  flatten = jax.jit(lambda images: images.reshape(images.shape[0], -1))
  train, test = (evaluation.extract(config, flatten, split, mesh)
                 for split in splits)
  results.update(_probe(config, "raw_pixels_probe", train, test))
  return results
