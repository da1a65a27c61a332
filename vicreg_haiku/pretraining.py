"""VICReg pretraining: the jitted step and the phase around it."""

import functools
import itertools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from vicreg_haiku import augmentations
from vicreg_haiku import datasets
from vicreg_haiku import device_augmentations
from vicreg_haiku import evaluation
from vicreg_haiku import loop
from vicreg_haiku import losses
from vicreg_haiku import models
from vicreg_haiku import optimizers
from vicreg_haiku import parallel
from vicreg_haiku import writers

PHASE = "pretrain"


def total_steps(config: ml_collections.ConfigDict) -> int:
  """Steps of the schedule; max_steps stops a run early without changing it."""
  steps = config.pretrain.epochs * datasets.pretrain_steps_per_epoch(config)
  if config.pretrain.max_steps is not None:
    steps = min(steps, config.pretrain.max_steps)
  return steps


def make_optimizer(config: ml_collections.ConfigDict
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """LARS on the official warm-up + cosine schedule (over all epochs)."""
  p = config.pretrain
  steps_per_epoch = datasets.pretrain_steps_per_epoch(config)
  schedule = optimizers.warmup_cosine(
      p.base_lr, p.batch_size, p.warmup_epochs * steps_per_epoch,
      p.epochs * steps_per_epoch)
  optimizer = optimizers.lars(schedule, weight_decay=p.weight_decay,
                              momentum=p.momentum,
                              trust_coefficient=p.trust_coefficient)
  return optimizer, schedule


def init_state(config: ml_collections.ConfigDict, model, optimizer
               ) -> models.TrainState:
  size = config.dataset.image_size
  dummy = jnp.zeros((2, size, size, 3), jnp.float32)

  def init():
    params, net_state = model.init(models.init_key(config.seed, 0), dummy,
                                   dummy)
    return models.TrainState(step=jnp.zeros([], jnp.int32), params=params,
                             net_state=net_state,
                             opt_state=optimizer.init(params))

  return jax.jit(init)()


def embedding_stats(z: jax.Array, collapse_std: float
                    ) -> dict[str, jax.Array]:
  """The per-dimension std over the batch, summarised for the collapse watch.

  embedding_std: its mean over dimensions (~0 means collapse);
  collapsed_fraction: the fraction of dimensions whose std < collapse_std.
  """
  std = jnp.std(z.astype(jnp.float32), axis=0)
  return {"embedding_std": jnp.mean(std),
          "collapsed_fraction": jnp.mean(std < collapse_std)}


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


def two_views(config: ml_collections.ConfigDict, batch
              ) -> tuple[jax.Array, jax.Array]:
  """The views of a pretrain_batches batch; made here when augment_on is
  "device" (inside the jitted step, on the accelerator)."""
  if config.pretrain.augment_on == "device":
    recipe = config.augmentations[config.pretrain.augmentation]
    return device_augmentations.two_views(batch, recipe)
  return batch["view_a"], batch["view_b"]


def make_step(config: ml_collections.ConfigDict, model,
              optimizer: optax.GradientTransformation, schedule_lr):
  """The pretraining step on the global batch: loss, grads, LARS update."""

  def loss_fn(params, net_state, view_a, view_b):
    (z_a, z_b, _), net_state = model.apply(params, net_state, None, view_a,
                                           view_b)
    loss, terms = losses.vicreg_loss(z_a, z_b, **config.loss)
    stats = embedding_stats(z_a, config.pretrain.collapse_std)
    return loss, (net_state, dict(terms, **stats))

  def step(state: models.TrainState, batch):
    (loss, (net_state, metrics)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params, state.net_state,
                               *two_views(config, batch))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new = models.TrainState(state.step + 1, optax.apply_updates(state.params, updates),
                            net_state, opt_state)
    new, guard = loop.keep_if_finite(state, new, loss, grads, updates)
    metrics = dict(metrics, **guard, loss=loss, lr=schedule_lr(state.step))
    return new, metrics

  return step


def run(config: ml_collections.ConfigDict, workdir: str, mesh
        ) -> dict[str, dict]:
  """Pretrains (resuming if it can); returns the final kNN monitor result."""
  phase_dir = os.path.join(workdir, PHASE)
  model = models.pretrain_model(config)
  optimizer, schedule = make_optimizer(config)
  p = config.pretrain
  replicated = parallel.replicated_sharding(mesh)
  step_fn = jax.jit(make_step(config, model, optimizer, schedule),
                    donate_argnums=0, out_shardings=replicated)
  monitor = evaluation.Monitor(config, mesh)

  def on_log(step, state):
    scalars = monitor.rankme(state.params, state.net_state)
    if p.knn_every_steps and step % p.knn_every_steps == 0:
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
  initial = init_state(config, model, optimizer)
  state = loop.run(loop_config, initial, step_fn, batches, mesh, on_log,
                   watch_collapse)
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
  view_a, view_b = jax.jit(functools.partial(two_views, config))(first)
  grid = augmentations.view_grid(view_a, view_b, recipe.mean, recipe.std)
  augmentations.write_png(os.path.join(phase_dir, "views.png"), grid)
  writer = writers.MetricsWriter(phase_dir)
  writer.write_image(0, "augmented_views", np.asarray(grid))
  writer.close()
