"""Every program a run compiles, lowered for a mesh from the config alone.

Each program is the one the run jits (the same step functions, shardings
and donation), lowered against abstract arrays: the state's shapes from
jax.eval_shape of its init, the batches' from the config (reading no
data). plan.py compiles them for a TPU slice; tracing happens inside
compile_target.compiling_for("tpu"), so the programs are a TPU VM's
(augment_on="auto" is the device path, XLA:CPU's workarounds are left out).
"""

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vicreg_haiku.data import canvas
from vicreg_haiku.data import device_augmentations
from vicreg_haiku.data import example_batches
from vicreg_haiku.evaluation import classifier
from vicreg_haiku.evaluation import linear
from vicreg_haiku.evaluation import official_probe
from vicreg_haiku.models import transforms
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step

# Rows of the features protocol's probe when the train split's size is
# unknown to the plan.
DEFAULT_PROBE_ROWS = 50_000


@dataclasses.dataclass(frozen=True)
class Program:
  """A program at a global batch: `lower(batch)` lowers it for the mesh."""
  name: str
  batch: int  # global examples a run of it handles
  lower: Callable[[int], jax.stages.Lowered]
  # False where a run is no step over `batch` images (the features
  # protocol's probe fits on stored features, every epoch in one program).
  per_image: bool = True


def _abstract(tree, sharding):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      tree)


def _batch_specs(example: dict[str, np.ndarray], batch: int, mesh):
  """`example`'s arrays as [batch, ...] specs sharded over `data`."""
  return {k: jax.ShapeDtypeStruct((batch, *v.shape[1:]), v.dtype,
                                  sharding=parallel.batch_sharding(mesh))
          for k, v in example.items()}


def _with(config: ml_collections.ConfigDict, **settings):
  """A copy of config with dotted settings changed ("pretrain.batch_size")."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for key, value in settings.items():
      section, field = key.rsplit(".", 1)
      config[section][field] = value
  return config


def plan_config(config: ml_collections.ConfigDict,
                image_side: int | None = None) -> ml_collections.ConfigDict:
  """The config as a TPU run resolves it: augment_on "auto" is the device
  path; the canvas pretrain.canvas_size, else `image_side` (the dataset's
  one image size, where the caller knows it), else canvas.UNKNOWN_SIZES_SIDE
  (the data would decide it, and a plan reads none)."""
  augment_on = device_augmentations.resolve(config.pretrain.augment_on, "tpu")
  side = (config.pretrain.canvas_size or image_side
          or canvas.UNKNOWN_SIZES_SIDE)
  return _with(config, **{"pretrain.augment_on": augment_on,
                          "pretrain.canvas_size": side})


def _pretrain_state(config, mesh):
  """(model, optimizer, schedule, the state's specs, placed as training
  places them: parallel.state_sharding)."""
  model = transforms.pretrain_model(config)
  # The schedule's length does not change the step's program.
  optimizer, schedule = pretrain_step.make_optimizer(config, 1)
  state = jax.eval_shape(
      lambda: pretrain_step.init_state(config, model, optimizer))
  return model, optimizer, schedule, jax.tree.map(
      lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                               sharding=sharding),
      state, parallel.state_sharding(state, mesh))


def _images(config, batch: int, mesh) -> jax.ShapeDtypeStruct:
  size = config.dataset.image_size
  return jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32,
                              sharding=parallel.batch_sharding(mesh))


def _labelled(config, batch: int, mesh) -> dict[str, jax.ShapeDtypeStruct]:
  return {"image": _images(config, batch, mesh),
          "label": jax.ShapeDtypeStruct((batch,), jnp.int32,
                                        sharding=parallel.batch_sharding(mesh))}


def _encoder(config, mesh):
  """The encoder's params and BN state (specs), as a probe restores them."""
  _, _, _, state = _pretrain_state(config, mesh)
  return (transforms.encoder_part(state.params),
          transforms.encoder_part(state.net_state))


def pretrain(config, mesh) -> list[Program]:
  """The pretraining step and, on the device path, its views alone."""

  def step(batch):
    c = _with(config, **{"pretrain.batch_size": batch})
    model, optimizer, schedule, state = _pretrain_state(c, mesh)
    example = example_batches.pretrain_batch(c, 1)
    return pretrain_step.jit_step(c, model, optimizer, schedule, mesh).lower(
        state, _batch_specs(example, batch, mesh))

  def views(batch):
    example = example_batches.pretrain_batch(config, 1)
    return jax.jit(functools.partial(pretrain_step.views, config),
                   out_shardings=parallel.batch_sharding(mesh)).lower(
                       _batch_specs(example, batch, mesh))

  programs = [Program("pretrain step", config.pretrain.batch_size, step)]
  if config.pretrain.augment_on == "device":
    programs.append(Program("views", config.pretrain.batch_size, views))
  return programs


def features(config, mesh) -> Program:
  """The frozen encoder's forward: kNN monitor, probes, embeddings."""

  def lower(batch):
    params, net_state = _encoder(config, mesh)
    apply = jax.jit(transforms.feature_model(config).apply)
    return apply.lower(params, net_state, None,
                       _images(config, batch, mesh))

  return Program("features", config.eval_batch_size, lower)


def probe(config, mesh, num_classes: int,
          train_examples: int | None) -> Program:
  """The probe of config.linear_probe.protocol: the official protocol's SGD
  step on the frozen encoder, or the features protocol's whole fit."""
  settings = config.linear_probe
  params, net_state = _encoder(config, mesh)
  width = jax.eval_shape(
      transforms.feature_model(config).apply, params, net_state, None,
      _images(config, 1, mesh))[0].shape[-1]
  replicated = parallel.replicated_sharding(mesh)
  if settings.protocol == "official":
    head = official_probe.head_model(num_classes)

    def lower(batch):
      optimizer, schedule = official_probe.make_optimizer(
          config, steps_per_epoch=1)
      head_params = jax.eval_shape(head.init, jax.random.key(0),
                                   jnp.zeros((1, width), jnp.float32))
      state = jax.eval_shape(
          lambda p: transforms.TrainState(jnp.zeros([], jnp.int32), p, {},
                                          optimizer.init(p)), head_params)
      step = jax.jit(official_probe.make_step(config, head, optimizer,
                                              schedule), donate_argnums=0)
      return step.lower(_abstract(state, replicated),
                        _labelled(config, batch, mesh), params, net_state)

    return Program("probe step", settings.batch_size, lower)

  rows = train_examples or DEFAULT_PROBE_ROWS
  one_chip = jax.sharding.SingleDeviceSharding(mesh.devices.flat[0])

  def fit(batch):
    del batch  # the fit batches its rows itself
    spec = functools.partial(jax.ShapeDtypeStruct, sharding=one_chip)
    key = jax.eval_shape(lambda: jax.random.key(0))
    return linear._fit_linear.lower(  # pylint: disable=protected-access
        spec((rows, width), jnp.float32), spec((rows,), jnp.int32),
        spec((), jnp.int32), spec(key.shape, key.dtype),
        num_classes=num_classes, epochs=settings.epochs,
        batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay)

  return Program("probe fit", rows, fit, per_image=False)


def classifier_step(config, mesh, phase: str, num_classes: int) -> Program:
  """The fine-tune's or the supervised baseline's step (one program: they
  differ in their rates, which are arguments)."""
  model = transforms.classifier_model(config, num_classes)
  rates = classifier.rates(config, phase)
  optimizer_for = functools.partial(classifier.make_optimizer, config, phase,
                                    total_steps=1)

  def lower(batch):
    state = jax.eval_shape(lambda: classifier.init_state(
        config, phase, model, optimizer_for(rates), None))
    step = classifier.jit_step(config, phase, model, optimizer_for)
    return step.lower(_abstract(state, parallel.replicated_sharding(mesh)),
                      _labelled(config, batch, mesh), rates)

  return Program(f"{phase} step", config[phase].batch_size, lower)
