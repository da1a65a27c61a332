"""The pretraining phase: the step (pretrain_step.py) fed, looped, logged."""

import functools
import itertools
import os

import jax
import ml_collections
import numpy as np
from absl import logging

from vicreg_haiku.data import datasets
from vicreg_haiku.evaluation import monitors
from vicreg_haiku.evaluation import neighbour_grid
from vicreg_haiku.evaluation import plots
from vicreg_haiku.evaluation import results
from vicreg_haiku.models import transforms
from vicreg_haiku.training import loop
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import writers

PHASE = pretrain_step.PHASE
VIEWS_PNG = "views.png"
NEIGHBOURS_PNG = "neighbours.png"
# Points a run gets when a cadence is None (curves.png shows them).
LOG_POINTS, RANKME_POINTS, KNN_POINTS = 100, 20, 10


def total_steps(config: ml_collections.ConfigDict) -> int:
  """Steps of the schedule; max_steps stops a run early without changing it."""
  steps = config.pretrain.epochs * datasets.pretrain_steps_per_epoch(config)
  if config.pretrain.max_steps is not None:
    steps = min(steps, config.pretrain.max_steps)
  return steps


# By loss.name: the term that holds the embeddings' spread up, and its
# coefficient.
_SPREAD_TERM = {"vicreg": ("variance", "loss.std_coeff"),
                "sigreg": ("sigreg", "loss.sigreg.lambd")}


def collapse_warning(step: int, scalars, collapse_std: float,
                     collapse_fraction: float,
                     loss_name: str = "vicreg") -> str | None:
  """The warning to give when (almost) every dimension collapsed, else None."""
  fraction = float(scalars["collapsed_fraction"])
  if not fraction >= collapse_fraction:
    return None
  term, coefficient = _SPREAD_TERM[loss_name]
  return (f"{PHASE}: COLLAPSE at step {step}: {100 * fraction:.1f}% of the "
          f"embedding dimensions have std < {collapse_std:g} over the batch "
          f"(mean std {float(scalars['embedding_std']):.3g}, {term} term "
          f"{float(scalars.get(term, float('nan'))):.4g}); the "
          f"representation is collapsing: raise {coefficient} or lower the "
          "learning rate")


def _start_from(initial: transforms.TrainState, imported: transforms.Weights,
                optimizer) -> transforms.TrainState:
  """`initial` with the imported params and BN state (the encoder's, and the
  expander's when `imported` has one) and the optimizer state of those."""
  params = {**initial.params, **imported.params}
  return initial._replace(
      params=params, net_state={**initial.net_state, **imported.net_state},
      opt_state=optimizer.init(params))


def run(config: ml_collections.ConfigDict, workdir: str, mesh,
        imported: transforms.Weights | None = None) -> dict[str, dict]:
  """Pretrains (resuming if it can); returns the final kNN monitor result.

  `imported` (config.model.init_from) is where a fresh run starts from; the
  runner passes None once the workdir has a checkpoint to resume.
  """
  phase_dir = os.path.join(workdir, PHASE)
  model = transforms.pretrain_model(config)
  optimizer, schedule = pretrain_step.make_optimizer(
      config, datasets.pretrain_steps_per_epoch(config))
  p = config.pretrain
  step_fn = pretrain_step.jit_step(config, model, optimizer, schedule, mesh)
  monitor = monitors.Monitor(config, mesh)

  steps = total_steps(config)
  log_every = loop.cadence(p.log_every_steps, steps, LOG_POINTS)
  rankme_every = loop.cadence(p.rankme_every_steps, steps, RANKME_POINTS)
  # Unlabelled data (a folder of photos) has no kNN monitor.
  knn_every = (loop.cadence(p.knn_every_steps, steps, KNN_POINTS)
               if monitor.has_labels else None)

  knn_at = {}  # step -> kNN accuracies; the last step's is the result

  def on_log(step, state):
    scalars = {}
    if step % rankme_every == 0 or step == steps:
      scalars.update(monitor.rankme(state.params, state.net_state))
    if knn_every is not None and (
        (knn_every and step % knn_every == 0) or step == steps):
      knn_at[step] = monitor.knn(state.params, state.net_state)
      scalars["knn_top1"] = knn_at[step]["top1"]
    return scalars

  def watch_collapse(step, scalars):
    message = collapse_warning(step, scalars, p.collapse_std,
                               p.collapse_fraction, config.loss.name)
    if message is not None:
      logging.warning("%s", message)
      writers.console(f"WARNING: {message}")

  loop_config = loop.LoopConfig(
      phase=PHASE, phase_dir=phase_dir, total_steps=steps,
      examples_per_step=p.batch_size, log_every_steps=log_every,
      checkpoint_every_steps=p.checkpoint_every_steps,
      checkpoint_every_seconds=p.checkpoint_every_seconds,
      skip_nonfinite=p.skip_nonfinite)
  batches = functools.partial(_pretrain_stream, config, phase_dir)
  initial = pretrain_step.init_state(config, model, optimizer)
  if imported is not None:
    initial = _start_from(initial, imported, optimizer)
  state = loop.run(loop_config, initial, step_fn, batches, mesh, on_log,
                   watch_collapse,
                   sharding=parallel.state_sharding(initial, mesh))
  step = int(state.step)
  _write_neighbours(config, workdir, state, mesh)
  if knn_every is None:  # unlabelled data: nothing to classify
    return {PHASE: {"steps": step, "loss": config.loss.name}}
  knn = knn_at.get(step) or monitor.knn(state.params, state.net_state)
  return {"pretrain_knn": dict(knn, steps=step, loss=config.loss.name)}


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
  views = jax.jit(functools.partial(pretrain_step.views, config))
  view_a, view_b = views(first)[:2]  # the global views
  image = plots.views(np.asarray(view_a), np.asarray(view_b), recipe.mean,
                      recipe.std)
  results.write_picture(os.path.join(phase_dir, VIEWS_PNG), phase_dir,
                        "augmented_views", image)


def _write_neighbours(config, workdir: str, state, mesh) -> None:
  """WORKDIR/neighbours.png (and in TensorBoard), on a one-process job."""
  if jax.process_count() > 1:
    writers.console(f"{NEIGHBOURS_PNG}: not drawn in a multi-process job "
                    "(it reads the whole split on one process); python -m "
                    "vicreg_haiku.embed, then .neighbours, find them after")
    return
  image = neighbour_grid.picture(config, state.params, state.net_state, mesh)
  if image is not None:
    results.write_picture(os.path.join(workdir, NEIGHBOURS_PNG),
                          os.path.join(workdir, PHASE), "neighbours", image)
