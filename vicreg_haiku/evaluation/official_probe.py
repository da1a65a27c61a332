"""The official linear evaluation: facebookresearch/vicreg evaluate.py with
--weights freeze, as papers report ImageNet linear top-1.

- The encoder frozen, BatchNorm in inference mode (evaluate.py puts the model
  in eval() for the whole run); a linear head initialised N(0, 0.01), bias 0.
- SGD, momentum 0.9, weight decay on the head's weight and bias (torch's SGD
  decays every parameter it is handed); the learning rate follows
  CosineAnnealingLR(T_max=epochs) stepped once an epoch, so it is constant
  within an epoch.
- Training images: random resized crop (scale 0.08..1, bilinear) and a
  horizontal flip; test images: the evaluation transform (Resize(size * 256 /
  224) + CenterCrop(size) for images of many sizes).
- After every epoch the test split is scored. results.json reports the last
  epoch's top-1 (top-5) and, as evaluate.py prints them, the best epoch's
  (best_top1 and best_top5, each its own maximum, as there).

Two differences, neither changing the numbers' meaning: the test features are
computed once (the encoder is frozen and the transform deterministic, so
every epoch's would be the same), and an epoch drops its last partial batch.
The probe resumes exactly like every phase (loop.run): the head and its
optimizer state are checkpointed under WORKDIR/linear_probe.
"""

import functools
import os

import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath

from vicreg_haiku.data import datasets
from vicreg_haiku.evaluation import features
from vicreg_haiku.evaluation import metrics
from vicreg_haiku.models import heads
from vicreg_haiku.models import transforms
from vicreg_haiku.training import loop
from vicreg_haiku.training import optimizers
from vicreg_haiku.training import parallel
from vicreg_haiku.utils import errors
from vicreg_haiku.utils import writers

PHASE = "linear_probe"
# WORKDIR/linear_probe/ENCODER_FILE: where the probed encoder came from.
ENCODER_FILE = "encoder.txt"
# The training images' stream, apart from pretraining's and the classifiers'.
_STREAM_OFFSET = 3
_HEAD_INIT_STREAM = 4


def steps(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """(steps per epoch, total steps) of the probe."""
  probe = config.linear_probe
  per_epoch = (datasets.num_examples(config, config.dataset.train_split)
               // probe.batch_size)
  return per_epoch, per_epoch * probe.epochs


def train_data_problem(config: ml_collections.ConfigDict) -> str | None:
  """Why the official protocol cannot train on the train split (one line),
  or None (the features protocol batches its features itself)."""
  probe = config.linear_probe
  if probe.protocol != "official":
    return None
  n = datasets.num_examples(config, config.dataset.train_split)
  if n < probe.batch_size:
    return (f"config.linear_probe.batch_size={probe.batch_size} exceeds the "
            f"{n} examples of the train split "
            f"{config.dataset.train_split!r}: use a smaller batch")
  return None


def epoch_cosine(base_lr: float, steps_per_epoch: int, epochs: int
                 ) -> optax.Schedule:
  """CosineAnnealingLR(T_max=epochs) stepped at each epoch's end: epoch e
  trains at base_lr * (1 + cos(pi * e / epochs)) / 2."""

  def schedule(count):
    epoch = count // steps_per_epoch
    return base_lr * 0.5 * (1 + jnp.cos(jnp.pi * epoch / epochs))

  return schedule


def make_optimizer(config: ml_collections.ConfigDict, *,
                   steps_per_epoch: int | None = None
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(SGD as evaluate.py's, its learning-rate schedule); steps_per_epoch
  None: the train split's (steps(), which reads its size)."""
  official = config.linear_probe.official
  per_epoch = steps(config)[0] if steps_per_epoch is None else steps_per_epoch
  schedule = epoch_cosine(official.learning_rate, per_epoch,
                          config.linear_probe.epochs)
  # torch's SGD adds weight_decay * p to the gradient before the momentum.
  optimizer = optax.chain(optax.add_decayed_weights(official.weight_decay),
                          optax.sgd(schedule, momentum=official.momentum))
  return optimizer, schedule


def head_model(num_classes: int) -> hk.Transformed:
  """features -> logits, the head alone (the encoder is frozen)."""
  return hk.without_apply_rng(
      hk.transform(lambda features: heads.LinearHead(num_classes)(features)))


def make_step(config: ml_collections.ConfigDict, head: hk.Transformed,
              optimizer: optax.GradientTransformation,
              schedule: optax.Schedule):
  """step(state, batch, encoder_params, encoder_state): one SGD step of the
  head on the frozen encoder's inference-mode features."""
  feature_apply = transforms.feature_model(config).apply

  def loss_fn(head_params, features, labels):
    logits = head.apply(head_params, features)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, labels))
    return loss, jnp.mean(jnp.argmax(logits, -1) == labels)

  def step(state: transforms.TrainState, batch, encoder_params, encoder_state):
    features, _ = feature_apply(encoder_params, encoder_state, None,
                                batch["image"])
    features = jax.lax.stop_gradient(features.astype(jnp.float32))
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, features, batch["label"])
    new, guard = optimizers.apply_if_finite(optimizer, state, state.net_state,
                                            loss, grads)
    return new, dict(guard, loss=loss, train_top1=accuracy,
                     lr=schedule(state.step))

  return step


def _scorer(head: hk.Transformed, test_features: np.ndarray,
            test_labels: np.ndarray):
  """state -> {"test_top1", ("test_top5")}: the head on the test features."""

  def score(state: transforms.TrainState) -> dict[str, float]:
    logits = head.apply(parallel.to_host(state.params), test_features)
    return {
        f"test_{name}": value for name, value in metrics.accuracies(
            np.asarray(logits), test_labels).items()
    }

  return score


def _best(records: list[dict], final: dict[str, float]) -> dict[str, float]:
  """best_top1 (best_top5): each the maximum over the epochs' test scores."""
  best = {}
  for name, value in final.items():
    scores = [r[f"test_{name}"] for r in records if f"test_{name}" in r]
    best[f"best_{name}"] = max(scores + [value])
  return best


def _pin_encoder(phase_dir: str, source: str) -> None:
  """A resumed probe must train its head on the encoder it started on: the
  first start records where that came from (process 0, which writes the
  workdir's files), a resume on another (its source pretrained further
  since) is refused, on every process."""
  problem = ""
  if parallel.is_chief():
    path = epath.Path(phase_dir) / ENCODER_FILE
    started = path.read_text().strip() if path.exists() else None
    if started is None:
      path.parent.mkdir(parents=True, exist_ok=True)
      writers.write_atomically(str(path), source + "\n")
    elif started != source:
      problem = (f"{phase_dir} holds a probe of the encoder {started}, and "
                 f"the encoder now is {source}: use a new --workdir (or "
                 f"delete {phase_dir}) to probe it")
  if jax.process_count() > 1:
    problem = parallel.broadcast_text(problem)
  if problem:
    raise errors.ConfigError(problem)


def run(config: ml_collections.ConfigDict, workdir: str, mesh,
        weights: transforms.Weights) -> dict[str, dict]:
  """The official linear evaluation of `weights`' encoder; results entries."""
  probe, split = config.linear_probe, config.dataset.train_split
  phase_dir = os.path.join(workdir, PHASE)
  _pin_encoder(phase_dir, weights.source)
  num_classes = datasets.num_classes(config)
  head = head_model(num_classes)
  optimizer, schedule = make_optimizer(config)
  per_epoch, total = steps(config)
  test_features, test_labels = features.extract(
      config,
      features.encoder_features(config)(weights.params, weights.net_state),
      config.dataset.test_split, mesh)
  score = _scorer(head, test_features, test_labels)
  step_fn = functools.partial(
      jax.jit(make_step(config, head, optimizer, schedule),
              donate_argnums=0),
      encoder_params=weights.params, encoder_state=weights.net_state)

  def batches(start_step):
    return datasets.labelled_batches(
        config, split, batch_size=probe.batch_size, start_step=start_step,
        augment=True, crop_scale=probe.official.crop_scale,
        interpolation="bilinear", flip_prob=0.5, seed_offset=_STREAM_OFFSET)

  params = head.init(transforms.init_key(config.seed, _HEAD_INIT_STREAM),
                     jnp.zeros((1, test_features.shape[1]), jnp.float32))
  initial = transforms.TrainState(jnp.zeros([], jnp.int32), params, {},
                                  optimizer.init(params))
  loop_config = loop.LoopConfig(
      phase=PHASE, phase_dir=phase_dir, total_steps=total,
      examples_per_step=probe.batch_size, log_every_steps=per_epoch,
      checkpoint_every_steps=per_epoch,
      skip_nonfinite=probe.skip_nonfinite)
  state = loop.run(loop_config, initial, step_fn, batches, mesh,
                   on_log=lambda step, state: score(state))
  final = {name.removeprefix("test_"): value
           for name, value in score(state).items()}
  entry = dict(final, **_best(writers.read_metrics(phase_dir), final),
               protocol="official", epochs=probe.epochs, steps=total,
               labels=datasets.num_examples(config, split),
               encoder=weights.source)
  return {PHASE: entry}
