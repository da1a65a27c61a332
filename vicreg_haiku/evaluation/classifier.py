"""Encoder + linear head trained end to end: `finetune` and `supervised`.

`finetune` starts the encoder from the pretrained VICReg weights (the original
notebook's comparison); `supervised` trains the same network from random init
on the same labelled split with the same budget (its baseline).

Semi-supervised, as the papers report it: a phase trains on
config[phase].label_fraction of every class of config.dataset.train_split (a
fixed pick per config.seed, so both phases of a config see the same labels),
or on the train split of another tfds dataset, config[phase].train_dataset
(imagenet2012_subset/1pct: SimCLR's 1% of ImageNet, the official evaluate.py's
--train-percent 1), and is tested on config.dataset's test split either way.
"""

import functools
import os
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vicreg_haiku.data import datasets
from vicreg_haiku.data import shards
from vicreg_haiku.data import sources
from vicreg_haiku.evaluation import features
from vicreg_haiku.evaluation import metrics
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.models import transforms
from vicreg_haiku.training import loop
from vicreg_haiku.training import optimizers

PHASES = ("finetune", "supervised")
LOG_POINTS = 100  # metrics.jsonl lines a run gets when log_every_steps is None
# Distinct data streams for the two phases, both pure functions of the step.
_STREAM_OFFSET = {"finetune": 1, "supervised": 2}


def train_config(config: ml_collections.ConfigDict, phase: str
                 ) -> ml_collections.ConfigDict:
  """The config whose dataset the phase trains on: `config`, or a copy whose
  dataset.name is config[phase].train_dataset (data_dir, manual_dir, splits
  and class filter shared: imagenet2012_subset is prepared from the same
  ILSVRC-2012 tars)."""
  name = config[phase].train_dataset
  if not name or name == config.dataset.name:
    return config
  train = config.copy_and_resolve_references()
  train.dataset.name = name
  return train


def num_labels(config: ml_collections.ConfigDict, phase: str) -> int:
  """The labelled examples the phase trains on."""
  return datasets.num_examples(train_config(config, phase),
                               config.dataset.train_split,
                               config[phase].label_fraction)


def train_data_problem(config: ml_collections.ConfigDict, phase: str
                       ) -> str | None:
  """Why the phase cannot train on its labelled set (one line), or None.
  Reads the set's metadata: prepares a train_dataset on its first use."""
  settings = config[phase]
  train, split = train_config(config, phase), config.dataset.train_split
  if train is not config:
    try:
      theirs = sources.split_info(train, split).class_names or ()
    except shards.DataError as error:  # name the key the user set
      return str(error).replace(
          f"config.dataset.name={settings.train_dataset!r}",
          f"config.{phase}.train_dataset={settings.train_dataset!r}")
    ours = sources.split_info(config, split).class_names or ()
    if theirs != ours:
      tested_on = f"config.dataset.name={config.dataset.name!r}"
      if len(theirs) != len(ours):
        differ = f"{len(theirs)} classes, {tested_on} {len(ours)}"
      else:
        a, b = next((a, b) for a, b in zip(theirs, ours) if a != b)
        differ = f"class {a!r} where {tested_on} has {b!r}"
      return (f"config.{phase}.train_dataset={settings.train_dataset!r} has "
              f"{differ}: the phase is tested on config.dataset's "
              f"{config.dataset.test_split} split, so it trains on the same "
              "classes, in the same order")
  info = sources.split_info(train, split, settings.label_fraction)
  if info.num_examples < settings.batch_size:
    return (f"config.{phase}.batch_size={settings.batch_size} exceeds the "
            f"{info.num_examples} examples of {info.description}, which the "
            "phase trains on: use a smaller batch")
  return None


def steps(config: ml_collections.ConfigDict, phase: str) -> tuple[int, int]:
  """(steps per epoch, total steps) of a classifier phase: epochs of its
  labelled set, the last partial batch dropped."""
  settings = config[phase]
  per_epoch = max(num_labels(config, phase) // settings.batch_size, 1)
  return per_epoch, per_epoch * settings.epochs


def rates(config: ml_collections.ConfigDict, phase: str
          ) -> dict[str, np.float32]:
  """The phase's learning rates and weight decay. The step takes them as
  arguments, not constants, so finetune and supervised (which differ only
  in them) compile one program (the second loads it from the persistent
  compilation cache)."""
  settings = config[phase]
  if optimizers.optimizer_name(config, phase) == "adamw":
    settings = settings.adamw
  return {name: np.float32(settings[name])
          for name in ("lr_backbone", "lr_head", "weight_decay")}


def make_optimizer(config: ml_collections.ConfigDict, phase: str,
                   phase_rates: Mapping[str, jax.typing.ArrayLike], *,
                   total_steps: int | None = None
                   ) -> optax.GradientTransformation:
  """SGD + momentum (or AdamW: optimizers.optimizer_name), cosine to 0, one
  learning rate for the encoder and one for the head; weight decay on
  weights only (not biases, not norms; AdamW nor on pos_embed, cls_token).

  phase_rates: rates(config, phase), or the same traced inside the step.
  total_steps: the cosine's length; None: the phase's (steps(), which reads
  the size of the labelled set; a plan, which reads no data, gives one).
  """
  settings = config[phase]
  total = steps(config, phase)[1] if total_steps is None else total_steps

  def group(lr):
    if optimizers.optimizer_name(config, phase) == "adamw":
      return optimizers.adamw(optax.cosine_decay_schedule(lr, total),
                              weight_decay=phase_rates["weight_decay"])
    return optax.chain(
        optax.add_decayed_weights(phase_rates["weight_decay"],
                                  mask=optimizers.lars_mask),
        optax.sgd(optax.cosine_decay_schedule(lr, total),
                  momentum=settings.momentum))

  def label(params):
    def part(module):
      return "encoder" if module.startswith(transforms.ENCODER) else "head"
    return {module: jax.tree.map(lambda _: part(module), leaves)
            for module, leaves in params.items()}

  return optax.multi_transform({"encoder": group(phase_rates["lr_backbone"]),
                                "head": group(phase_rates["lr_head"])}, label)


def init_state(config, phase: str, model, optimizer,
               encoder: transforms.Weights | None) -> transforms.TrainState:
  """Random init; the fine-tune's encoder then replaced by `encoder`."""
  size = config.dataset.image_size
  params, net_state = jax.jit(functools.partial(model.init, is_training=True))(
      transforms.init_key(config.seed, _STREAM_OFFSET[phase]),
      jnp.zeros((2, size, size, 3), jnp.float32))
  if encoder is not None:
    params = {**params, **encoder.params}
    net_state = {**net_state, **encoder.net_state}
  return transforms.TrainState(jnp.zeros([], jnp.int32), params, net_state,
                               jax.jit(optimizer.init)(params))


def make_step(model, optimizer_for: Callable[[Mapping[str, jax.Array]],
                                             optax.GradientTransformation],
              step_key: Callable[[jax.Array], jax.Array | None] = (
                  lambda step: None)):
  """step(state, batch, phase_rates); optimizer_for(phase_rates) builds the
  optimizer from the traced rates; step_key(step) the key of the model's
  randomness (a ViT's drop-path; transforms.step_key)."""

  def loss_fn(params, net_state, rng, batch):
    logits, net_state = model.apply(params, net_state, rng, batch["image"],
                                    is_training=True)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["label"]))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, (net_state, {"train_top1": accuracy})

  def step(state: transforms.TrainState, batch, phase_rates):
    (loss, (net_state, metrics)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params, state.net_state,
                               step_key(state.step), batch)
    new, guard = optimizers.apply_if_finite(optimizer_for(phase_rates), state,
                                            net_state, loss, grads)
    return new, dict(metrics, **guard, loss=loss)

  return step


def jit_step(config: ml_collections.ConfigDict, phase: str, model,
             optimizer_for: Callable[[Mapping[str, jax.Array]],
                                     optax.GradientTransformation]):
  """make_step jitted as the phase runs it, the state donated:
  step(state, batch, phase_rates)."""
  return jax.jit(make_step(model, optimizer_for,
                           functools.partial(transforms.step_key, config,
                                             phase)),
                 donate_argnums=0)


def run(config: ml_collections.ConfigDict, workdir: str, phase: str, mesh,
        imported: transforms.Weights | None = None) -> dict[str, dict]:
  """Trains and tests `phase`; the fine-tune starts from the workdir's
  pretrained encoder, else from `imported` (config.model.init_from)."""
  settings = config[phase]
  train = train_config(config, phase)
  encoder = None
  if phase == "finetune":
    encoder = pretrained.pretrained_encoder(config, workdir, imported)
  model = transforms.classifier_model(config, datasets.num_classes(config))
  optimizer_for = functools.partial(make_optimizer, config, phase)
  phase_rates = rates(config, phase)
  _, total = steps(config, phase)
  step_fn = functools.partial(jit_step(config, phase, model, optimizer_for),
                              phase_rates=phase_rates)

  def batches(start_step):
    return datasets.labelled_batches(
        train, config.dataset.train_split,
        batch_size=settings.batch_size, start_step=start_step,
        augment=settings.augment, crop_scale=settings.crop_scale,
        label_fraction=settings.label_fraction,
        seed_offset=_STREAM_OFFSET[phase])

  loop_config = loop.LoopConfig(
      phase=phase, phase_dir=os.path.join(workdir, phase), total_steps=total,
      examples_per_step=settings.batch_size,
      log_every_steps=loop.cadence(settings.log_every_steps, total,
                                   LOG_POINTS),
      checkpoint_every_steps=settings.checkpoint_every_steps,
      skip_nonfinite=settings.skip_nonfinite)
  state = loop.run(loop_config,
                   init_state(config, phase, model, optimizer_for(phase_rates),
                              encoder),
                   step_fn, batches, mesh)
  apply = jax.jit(functools.partial(model.apply, is_training=False))
  logits, labels = features.extract(
      config,
      lambda images: apply(state.params, state.net_state, None, images)[0],
      config.dataset.test_split, mesh)
  entry = dict(metrics.accuracies(logits, labels),
               steps=total,
               labels=num_labels(config, phase))
  if settings.label_fraction < 1:
    entry["label_fraction"] = settings.label_fraction
  if train is not config:
    entry["train_dataset"] = settings.train_dataset
  if encoder is not None:
    entry["encoder"] = encoder.source
  return {phase: entry}
