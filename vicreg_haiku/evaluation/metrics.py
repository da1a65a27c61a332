"""What features are worth without training anything: RankMe, kNN accuracy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np


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
