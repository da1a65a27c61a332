"""The features protocol's linear probe: a linear head fitted on fixed
features, with every label or a per-class budget."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vicreg_haiku.evaluation import metrics


def per_class_subset(labels: np.ndarray, per_class: int,
                     seed: int) -> np.ndarray:
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
  return metrics.accuracies(logits, test_y)
