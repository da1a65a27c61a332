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
  """A jitted (params, net_state) -> (images -> features) factory.

  Only the encoder's part of the trees goes in, so a pretraining state, a
  restored encoder and a random init (placed alike) run one program.
  """
  apply = jax.jit(models.feature_model(config).apply)

  def bind(params, net_state):
    params, net_state = models.encoder_part(params), models.encoder_part(
        net_state)
    return lambda images: apply(params, net_state, None, images)[0]

  return bind


def rankme(features: np.ndarray, eps: float = 1e-7) -> float:
  """Effective rank (Garrido et al. 2023): exp of the entropy of the
  normalised singular values of the [N, F] feature matrix."""
  s = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
  p = s / np.sum(s) + eps
  return float(np.exp(-np.sum(p * np.log(p))))


def accuracies(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """{"top1"} and, with more than 10 classes, "top5" of class scores [N, C]
  (ties broken towards the lower class, as argmax)."""
  ranked = np.argsort(-np.asarray(scores), axis=1, kind="stable")
  out = {"top1": float(np.mean(ranked[:, 0] == labels))}
  if scores.shape[1] > 10:
    out["top5"] = float(np.mean(np.any(ranked[:, :5] == labels[:, None],
                                       axis=1)))
  return out


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_votes(train_f, train_y, test_f, *, k, temperature, num_classes):
  similarity = test_f @ train_f.T
  top_sim, top_idx = jax.lax.top_k(similarity, k)
  weights = jnp.exp(top_sim / temperature)
  votes = jax.nn.one_hot(train_y[top_idx], num_classes) * weights[..., None]
  return jnp.sum(votes, axis=1)


def knn(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray,
        test_y: np.ndarray, *, k: int, temperature: float, num_classes: int,
        chunk: int = 1024) -> dict[str, float]:
  """Weighted cosine kNN (the InstDisc / solo-learn monitor): accuracies()
  of the class votes. Test chunks are padded to `chunk` rows: one program."""

  def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

  train_f, test_f = unit(train_f), unit(test_f)
  k = min(k, len(train_f))
  votes = []
  for i in range(0, len(test_f), chunk):
    rows = test_f[i:i + chunk]
    padded = np.zeros((chunk, rows.shape[1]), rows.dtype)
    padded[:len(rows)] = rows
    votes.append(np.asarray(_knn_votes(
        train_f, train_y, padded, k=k, temperature=temperature,
        num_classes=num_classes))[:len(rows)])
  return accuracies(np.concatenate(votes), test_y)


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

  def knn(self, params, net_state) -> dict[str, float]:
    c = self._config
    apply_fn = self._features(params, net_state)
    train_f, train_y = extract(c, apply_fn, c.dataset.train_split, self._mesh)
    test_f, test_y = extract(c, apply_fn, c.dataset.test_split, self._mesh)
    return knn(train_f, train_y, test_f, test_y, k=c.pretrain.knn_k,
               temperature=c.pretrain.knn_temperature,
               num_classes=datasets.num_classes(c))


def per_class_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Indices of `per_class` examples of every class, a fixed random pick.

  One permutation of each class per seed, its first `per_class` taken: the
  picks of a seed are nested (the 5 per class hold the 1 per class).
  """
  rng = np.random.default_rng(seed)
  picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class]
           for c in np.unique(labels)]
  return np.sort(np.concatenate(picks))


@functools.partial(jax.jit, static_argnames=("num_classes", "epochs",
                                             "batch_size"))
def _fit_linear(x, y, count, key, *, num_classes, epochs, batch_size,
                learning_rate, weight_decay):
  """Softmax regression on the first `count` rows of x [N, F] (the rest is
  padding), so that every label budget of a split runs one program.

  AdamW, cosine to 0 over epochs * max(count // batch, 1) steps; an epoch
  is a random order of the `count` examples cut into full batches (the rest
  dropped) or, when count < batch, one batch of all of them.
  """
  n, f = x.shape
  batch = min(batch_size, n)
  steps_per_epoch = jnp.maximum(count // batch, 1)
  total = epochs * steps_per_epoch

  def schedule(step):
    progress = jnp.minimum(step, total) / total
    return learning_rate * 0.5 * (1 + jnp.cos(jnp.pi * progress))

  optimizer = optax.adamw(schedule, weight_decay=weight_decay)
  params = {"w": jnp.zeros((f, num_classes)), "b": jnp.zeros((num_classes,))}
  real = jnp.arange(n) < count

  def loss_fn(params, xb, yb, mask):
    logits = xb @ params["w"] + params["b"]
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
    return jnp.sum(jnp.where(mask, losses, 0.0)) / jnp.sum(mask)

  def epoch(epoch_index, carry):
    # The real rows first, in a random order; padding rows after them.
    keys = jax.random.uniform(jax.random.fold_in(key, epoch_index), (n,))
    order = jnp.argsort(jnp.where(real, keys, 2.0))

    def step(position, carry):
      params, opt_state = carry
      first = position * batch
      idx = jax.lax.dynamic_slice(order, (first,), (batch,))
      mask = first + jnp.arange(batch) < count
      grads = jax.grad(loss_fn)(params, x[idx], y[idx], mask)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    return jax.lax.fori_loop(0, steps_per_epoch, step, carry)

  carry = (params, optimizer.init(params))
  params, _ = jax.lax.fori_loop(0, epochs, epoch, carry)
  return params


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, *, num_classes: int,
                 probe: ml_collections.ConfigDict, seed: int,
                 pad_to: int | None = None) -> dict[str, float]:
  """accuracies() of a softmax regression trained on frozen features.

  Features are standardised with the training set's statistics (an affine
  reparametrisation: still a linear probe, but Adam converges in a fixed
  budget whatever the feature scale). The training rows are padded to
  `pad_to` (the split's size: one compiled program for every label budget).
  """
  mean = train_x.mean(axis=0)
  std = train_x.std(axis=0) + 1e-6
  count = len(train_y)
  rows = max(pad_to or count, count)
  x = np.zeros((rows, train_x.shape[1]), np.float32)
  x[:count] = (train_x - mean) / std
  y = np.zeros((rows,), np.int32)
  y[:count] = train_y
  params = _fit_linear(
      jnp.asarray(x), jnp.asarray(y), jnp.int32(count), jax.random.key(seed),
      num_classes=num_classes, epochs=probe.epochs,
      batch_size=probe.batch_size, learning_rate=probe.learning_rate,
      weight_decay=probe.weight_decay)
  logits = ((test_x - mean) / std) @ np.asarray(params["w"]) + np.asarray(
      params["b"])
  return accuracies(logits, test_y)
