"""The pretraining phase: the step (pretrain_step.py) fed, looped, logged."""

import functools
import itertools
import os

import jax
import ml_collections
import numpy as np
from absl import logging

from vicreg_haiku import augmentations
from vicreg_haiku import datasets
from vicreg_haiku import evaluation
from vicreg_haiku import loop
from vicreg_haiku import models
from vicreg_haiku import parallel
from vicreg_haiku import pretrain_step
from vicreg_haiku import writers

PHASE = "pretrain"


def total_steps(config: ml_collections.ConfigDict) -> int:
  """Steps of the schedule; max_steps stops a run early without changing it."""
  steps = config.pretrain.epochs * datasets.pretrain_steps_per_epoch(config)
  if config.pretrain.max_steps is not None:
    steps = min(steps, config.pretrain.max_steps)
  return steps


def collapse_warning(step: int, scalars, collapse_std: float,
                     collapse_fraction: float) -> str | None:
  """The warning to give when (almost) every dimension collapsed, else None."""
  fraction = float(scalars["collapsed_fraction"])
  if not fraction >= collapse_fraction:
    return None
  return (f"{PHASE}: COLLAPSE at step {step}: {100 * fraction:.1f}% of the "
          f"embedding dimensions have std < {collapse_std:g} over the batch "
          f"(mean std {float(scalars['embedding_std']):.3g}, variance term "
          f"{float(scalars.get('variance', float('nan'))):.4g}); the "
          "representation is collapsing: raise loss.std_coeff or lower the "
          "learning rate")


def _start_from(initial: models.TrainState, imported: models.Weights,
               optimizer) -> models.TrainState:
  """`initial` with the imported params and BN state (the encoder's, and the
  expander's when `imported` has one) and the optimizer state of those."""
  params = {**initial.params, **imported.params}
  return initial._replace(
      params=params, net_state={**initial.net_state, **imported.net_state},
      opt_state=optimizer.init(params))


def run(config: ml_collections.ConfigDict, workdir: str, mesh,
        imported: models.Weights | None = None) -> dict[str, dict]:
  """Pretrains (resuming if it can); returns the final kNN monitor result.

  `imported` (config.model.init_from) is where a fresh run starts from; the
  runner passes None once the workdir has a checkpoint to resume.
  """
  phase_dir = os.path.join(workdir, PHASE)
  model = models.pretrain_model(config)
  optimizer, schedule = pretrain_step.make_optimizer(
      config, datasets.pretrain_steps_per_epoch(config))
  p = config.pretrain
  step_fn = pretrain_step.jit_step(config, model, optimizer, schedule, mesh)
  monitor = evaluation.Monitor(config, mesh)

  knn = monitor.has_labels

  def on_log(step, state):
    scalars = monitor.rankme(state.params, state.net_state)
    if knn and p.knn_every_steps and step % p.knn_every_steps == 0:
      scalars["knn_top1"] = monitor.knn_top1(state.params, state.net_state)
    return scalars

  def watch_collapse(step, scalars):
    message = collapse_warning(step, scalars, p.collapse_std,
                               p.collapse_fraction)
    if message is not None:
      logging.warning("%s", message)
      writers.console(f"WARNING: {message}")

  loop_config = loop.LoopConfig(
      phase=PHASE, phase_dir=phase_dir, total_steps=total_steps(config),
      examples_per_step=p.batch_size,
      log_every_steps=p.log_every_steps,
      checkpoint_every_steps=p.checkpoint_every_steps,
      checkpoint_every_seconds=p.checkpoint_every_seconds,
      skip_nonfinite=p.skip_nonfinite)
  batches = functools.partial(_pretrain_stream, config, phase_dir)
  initial = pretrain_step.init_state(config, model, optimizer)
  if imported is not None:
    initial = _start_from(initial, imported, optimizer)
  state = loop.run(loop_config, initial, step_fn, batches, mesh, on_log,
                   watch_collapse)
  if not knn:  # unlabelled data: nothing to classify
    return {PHASE: {"steps": int(state.step)}}
  top1 = monitor.knn_top1(state.params, state.net_state)
  return {"pretrain_knn": {"top1": top1, "steps": int(state.step)}}


def _pretrain_stream(config, phase_dir: str, start_step: int):
  """The two-view batches from `start_step`; a fresh run first shows them."""
  batches = datasets.pretrain_batches(config, start_step=start_step)
  if start_step == 0:
    first = next(batches)
    _write_view_grid(config, phase_dir, first)
    batches = itertools.chain([first], batches)
  return batches


def _write_view_grid(config, phase_dir: str, batch, pairs: int = 8) -> None:
  """Augmented view pairs, as views.png and in TensorBoard."""
  if not parallel.is_chief():
    return
  recipe = config.augmentations[config.pretrain.augmentation]
  first = jax.tree.map(lambda x: x[:pairs], batch)
  views = jax.jit(functools.partial(pretrain_step.two_views, config))
  view_a, view_b = views(first)
  grid = augmentations.view_grid(view_a, view_b, recipe.mean, recipe.std)
  augmentations.write_png(os.path.join(phase_dir, "views.png"), grid)
  writer = writers.MetricsWriter(phase_dir)
  writer.write_image(0, "augmented_views", np.asarray(grid))
  writer.close()
