"""The pretraining step, VICReg or LeJEPA: optimizer, initial state, update.

Pure functions of the config and the model, with no input pipeline or I/O:
importing this module loads neither TensorFlow nor tf.data, so the step can
be run and measured on its own (benchmarks/train_step.py).
"""

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from vicreg_haiku.data import device_augmentations
from vicreg_haiku.models import transforms
from vicreg_haiku.training import losses
from vicreg_haiku.training import optimizers
from vicreg_haiku.training import parallel

# The phase this step trains: WORKDIR/pretrain/ holds its checkpoints, which
# evaluation/pretrained.py restores.
PHASE = "pretrain"


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """LARS or AdamW (optimizers.optimizer_name) on the official warm-up +
  cosine schedule (over all epochs), and that schedule.

  LARS: config.pretrain.base_lr (None: the paper's value for the batch
  size), weight_decay, momentum, trust_coefficient. AdamW:
  config.pretrain.adamw's base_lr, weight_decay (cosine to weight_decay_end
  when set), b1, b2; config.pretrain.clip_grad_norm either way.

  steps_per_epoch: datasets.pretrain_steps_per_epoch(config).
  """
  p = config.pretrain
  total = p.epochs * steps_per_epoch
  if optimizers.optimizer_name(config, PHASE) == "adamw":
    base_lr = p.adamw.base_lr
  else:
    base_lr = (optimizers.paper_base_lr(p.batch_size) if p.base_lr is None
               else p.base_lr)
  schedule = optimizers.warmup_cosine(
      base_lr, p.batch_size, p.warmup_epochs * steps_per_epoch, total)
  if optimizers.optimizer_name(config, PHASE) == "adamw":
    decay = p.adamw.weight_decay
    if p.adamw.weight_decay_end is not None:
      decay = optimizers.cosine_weight_decay(decay, p.adamw.weight_decay_end,
                                             total)
    return optimizers.adamw(schedule, weight_decay=decay, b1=p.adamw.b1,
                            b2=p.adamw.b2,
                            clip_grad_norm=p.clip_grad_norm), schedule
  optimizer = optimizers.lars(schedule, weight_decay=p.weight_decay,
                              momentum=p.momentum,
                              trust_coefficient=p.trust_coefficient)
  if p.clip_grad_norm is not None:
    optimizer = optax.chain(optimizers.clip_by_global_norm(p.clip_grad_norm),
                            optimizer)
  return optimizer, schedule


def init_state(config: ml_collections.ConfigDict, model,
               optimizer) -> transforms.TrainState:
  size = config.dataset.image_size
  dummy = jnp.zeros((2, size, size, 3), jnp.float32)

  def init(key):
    params, net_state = model.init(key, dummy, dummy)
    return transforms.TrainState(step=jnp.zeros([], jnp.int32),
                                 params=params,
                                 net_state=net_state,
                                 opt_state=optimizer.init(params))

  # The key is an argument, not a constant: every seed runs one program.
  return jax.jit(init)(transforms.init_key(config.seed, 0))


def embedding_stats(z: jax.Array, collapse_std: float
                    ) -> dict[str, jax.Array]:
  """The per-dimension std over the batch, summarised for the collapse watch.

  embedding_std: its mean over dimensions (~0 means collapse);
  collapsed_fraction: the fraction of dimensions whose std < collapse_std.
  """
  std = jnp.std(z.astype(jnp.float32), axis=0)
  return {"embedding_std": jnp.mean(std),
          "collapsed_fraction": jnp.mean(std < collapse_std)}


def views(config: ml_collections.ConfigDict, batch) -> list[jax.Array]:
  """The views of a pretrain_batches batch: the two global ones, then
  config.pretrain.local_views local ones; made here when augment_on is
  "device" (inside the jitted step, on the accelerator)."""
  recipe = config.augmentations[config.pretrain.augmentation]
  if device_augmentations.resolve(config.pretrain.augment_on) == "device":
    global_views = list(device_augmentations.two_views(batch, recipe))
    local_views = (device_augmentations.local_views(batch, recipe)
                   if config.pretrain.local_views else None)
  else:
    global_views = [batch["view_a"], batch["view_b"]]
    local_views = batch.get("local_views")
  if local_views is None:
    return global_views
  return global_views + [local_views[:, v]
                         for v in range(local_views.shape[1])]


# The stream of the keys SIGReg's directions are drawn from, apart from
# transforms' init and step streams.
_DIRECTIONS_STREAM = 110


def directions_key(config: ml_collections.ConfigDict,
                   step: jax.Array) -> jax.Array:
  """The key of SIGReg's directions at `step`: folded from (seed, step), so
  every device draws the same directions inside the one program, and a
  resumed run draws what the first run drew."""
  return jax.random.fold_in(
      transforms.init_key(config.seed, _DIRECTIONS_STREAM), step)


def loss_of_views(config: ml_collections.ConfigDict,
                  embeddings: Sequence[jax.Array], step: jax.Array, mesh
                  ) -> tuple[jax.Array, Mapping[str, jax.Array]]:
  """config.loss.name's loss of the views' [N, D] embeddings (the two
  global views first, then the local ones) and its unweighted terms."""
  loss = config.loss
  # Each device holds a slice of the features (global-batch statistics all
  # the same): VICReg computes its slice of the covariances, SIGReg its
  # slice's part of the projections, and the expander's last layer its
  # slice of the gradient, where the sharded update wants it.
  embeddings = [jax.lax.with_sharding_constraint(
      z, parallel.feature_sharding(z, mesh)) for z in embeddings]
  global_views, local_views = embeddings[:2], embeddings[2:]
  if loss.name == "sigreg":
    s = loss.sigreg
    directions = losses.random_directions(directions_key(config, step),
                                          embeddings[0].shape[-1], s.slices)
    return losses.lejepa_loss(global_views, local_views, directions,
                              lambd=s.lambd, t_max=s.t_max, knots=s.knots)
  coefficients = dict(sim_coeff=loss.sim_coeff, std_coeff=loss.std_coeff,
                      cov_coeff=loss.cov_coeff, eps=loss.eps)
  if not local_views:
    return losses.vicreg_loss(*global_views, **coefficients)
  return losses.vicreg_multi_view_loss(global_views, local_views,
                                       **coefficients)


def make_step(config: ml_collections.ConfigDict, model,
              optimizer: optax.GradientTransformation, schedule_lr, mesh):
  """The pretraining step on the global batch: loss, grads, the optimizer's
  update sharded over the mesh (parallel.update_sharding); a ViT's drop-path
  keyed by transforms.step_key, SIGReg's directions by directions_key."""

  def loss_fn(params, net_state, step, view_images):
    (embeddings, _), net_state = model.apply(
        params, net_state, transforms.step_key(config, PHASE, step),
        *view_images)
    loss, terms = loss_of_views(config, embeddings, step, mesh)
    stats = embedding_stats(embeddings[0], config.pretrain.collapse_std)
    return loss, (net_state, dict(terms, **stats))

  def step(state: transforms.TrainState, batch):
    (loss, (net_state, metrics)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params, state.net_state, state.step,
                               views(config, batch))
    # Each device updates its slice of the params: XLA reduce-scatters the
    # gradients, slices the (replicated) params locally, and the out
    # shardings all-gather the new params. LARS's norms are sums of the
    # slices' partial sums.
    grads = jax.lax.with_sharding_constraint(
        grads, parallel.update_sharding(grads, mesh))
    params = jax.lax.with_sharding_constraint(
        state.params, parallel.update_sharding(state.params, mesh))
    new, guard = optimizers.apply_if_finite(
        optimizer, state._replace(params=params), net_state, loss, grads)
    # The lr this step applies: the schedule's count is the step, skipped
    # steps included (optimizers.keep_if_finite).
    metrics = dict(metrics, **guard, loss=loss, lr=schedule_lr(state.step))
    return new, metrics

  return step


def jit_step(config: ml_collections.ConfigDict, model,
             optimizer: optax.GradientTransformation, schedule_lr, mesh):
  """make_step jitted as training runs it: the state donated (updated in
  place) and placed as parallel.state_sharding (the optimizer state sharded,
  the rest replicated), the metrics replicated."""
  state = jax.eval_shape(lambda: init_state(config, model, optimizer))
  return jax.jit(make_step(config, model, optimizer, schedule_lr, mesh),
                 donate_argnums=0,
                 out_shardings=(parallel.state_sharding(state, mesh),
                                parallel.replicated_sharding(mesh)))
