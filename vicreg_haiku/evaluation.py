"""Evaluating an encoder: features, kNN, RankMe and the linear probe.

Features come from the encoder with BatchNorm in inference mode, on the eval
pipeline (no randomness, every example once, padding masked out).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vicreg_haiku import datasets
from vicreg_haiku import models
from vicreg_haiku import parallel


def extract(config: ml_collections.ConfigDict, apply_fn, split: str, mesh,
            limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(apply_fn(images) for every example of `split`, labels), host NumPy.

  `apply_fn` maps a global image batch to a global [B, F] array.
  """
  outputs, labels = [], []
  seen = 0
  for batch in datasets.eval_batches(config, split,
                                     batch_size=config.eval_batch_size):
    global_batch = parallel.global_batch(batch, mesh)
    out, label, mask = parallel.to_host(
        (apply_fn(global_batch["image"]), global_batch["label"],
         global_batch["mask"]))
    outputs.append(np.asarray(out, np.float32)[mask])
    labels.append(label[mask])
    seen += int(mask.sum())
    if limit is not None and seen >= limit:
      break
  features = np.concatenate(outputs)[:limit]
  return features, np.concatenate(labels)[:limit]


def encoder_features(config: ml_collections.ConfigDict):
  """A jitted (params, net_state) -> (images -> features) factory."""
  apply = jax.jit(models.feature_model(config).apply)

  def bind(params, net_state):
    return lambda images: apply(params, net_state, None, images)[0]

  return bind


def rankme(features: np.ndarray, eps: float = 1e-7) -> float:
  """Effective rank (Garrido et al. 2023): exp of the entropy of the
  normalised singular values of the [N, F] feature matrix."""
  s = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
  p = s / np.sum(s) + eps
  return float(np.exp(-np.sum(p * np.log(p))))


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_predict(train_f, train_y, test_f, *, k, temperature, num_classes):
  similarity = test_f @ train_f.T
  top_sim, top_idx = jax.lax.top_k(similarity, k)
  weights = jnp.exp(top_sim / temperature)
  votes = jax.nn.one_hot(train_y[top_idx], num_classes) * weights[..., None]
  return jnp.argmax(jnp.sum(votes, axis=1), axis=-1)


def knn_top1(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray,
             test_y: np.ndarray, *, k: int, temperature: float,
             num_classes: int, chunk: int = 1024) -> float:
  """Weighted cosine kNN (the InstDisc / solo-learn monitor)."""

  def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

  train_f, test_f = unit(train_f), unit(test_f)
  k = min(k, len(train_f))
  predictions = [
      np.asarray(_knn_predict(train_f, train_y, test_f[i:i + chunk], k=k,
                              temperature=temperature,
                              num_classes=num_classes))
      for i in range(0, len(test_f), chunk)]
  return float(np.mean(np.concatenate(predictions) == test_y))


class Monitor:
  """Label-free and kNN health checks while pretraining."""

  def __init__(self, config: ml_collections.ConfigDict, mesh):
    self._config = config
    self._mesh = mesh
    self._features = encoder_features(config)

  def rankme(self, params, net_state) -> dict[str, float]:
    features, _ = extract(self._config, self._features(params, net_state),
                          self._config.dataset.train_split, self._mesh,
                          limit=self._config.pretrain.rankme_examples)
    return {"rankme": rankme(features),
            "feature_std": float(np.mean(np.std(features, axis=0)))}

  @property
  def has_labels(self) -> bool:
    return datasets.labels_missing(self._config) is None

  def knn_top1(self, params, net_state) -> float:
    c = self._config
    apply_fn = self._features(params, net_state)
    train_f, train_y = extract(c, apply_fn, c.dataset.train_split, self._mesh)
    test_f, test_y = extract(c, apply_fn, c.dataset.test_split, self._mesh)
    return knn_top1(train_f, train_y, test_f, test_y, k=c.pretrain.knn_k,
                    temperature=c.pretrain.knn_temperature,
                    num_classes=datasets.num_classes(c))


def per_class_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Indices of `per_class` examples of every class, a fixed random pick."""
  rng = np.random.default_rng(seed)
  picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class]
           for c in np.unique(labels)]
  return np.sort(np.concatenate(picks))


@functools.partial(jax.jit, static_argnames=("num_classes", "epochs",
                                             "batch_size"))
def _fit_linear(x, y, key, *, num_classes, epochs, batch_size, learning_rate,
                weight_decay):
  n, f = x.shape
  batch_size = min(batch_size, n)
  steps_per_epoch = n // batch_size
  schedule = optax.cosine_decay_schedule(learning_rate,
                                         epochs * steps_per_epoch)
  optimizer = optax.adamw(schedule, weight_decay=weight_decay)
  params = {"w": jnp.zeros((f, num_classes)), "b": jnp.zeros((num_classes,))}

  def loss_fn(params, xb, yb):
    logits = xb @ params["w"] + params["b"]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

  def epoch(carry, epoch_index):
    order = jax.random.permutation(jax.random.fold_in(key, epoch_index), n)
    order = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, -1)

    def step(carry, idx):
      params, opt_state = carry
      grads = jax.grad(loss_fn)(params, x[idx], y[idx])
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, carry, order)[0], None

  carry = (params, optimizer.init(params))
  params, _ = jax.lax.scan(epoch, carry, jnp.arange(epochs))[0]
  return params


def linear_probe_top1(train_x: np.ndarray, train_y: np.ndarray,
                      test_x: np.ndarray, test_y: np.ndarray, *,
                      num_classes: int, probe: ml_collections.ConfigDict,
                      seed: int) -> float:
  """Top-1 of a softmax regression trained on frozen features.

  Features are standardised with the training set's statistics (an affine
  reparametrisation: still a linear probe, but Adam converges in a fixed
  budget whatever the feature scale).
  """
  mean = train_x.mean(axis=0)
  std = train_x.std(axis=0) + 1e-6
  params = _fit_linear(
      jnp.asarray((train_x - mean) / std), jnp.asarray(train_y),
      jax.random.key(seed), num_classes=num_classes, epochs=probe.epochs,
      batch_size=probe.batch_size, learning_rate=probe.learning_rate,
      weight_decay=probe.weight_decay)
  logits = ((test_x - mean) / std) @ np.asarray(params["w"]) + np.asarray(
      params["b"])
  return float(np.mean(np.argmax(logits, axis=1) == test_y))
