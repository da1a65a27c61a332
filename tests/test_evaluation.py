"""Accuracies, the kNN monitor and the linear probe against NumPy."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vicreg_haiku.evaluation import linear
from vicreg_haiku.evaluation import metrics


def _ranked_reference(scores, labels, k):
  """Top-k by a Python sort per row (ties: the lower class first)."""
  hits = [label in sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]
          for row, label in zip(scores.tolist(), labels.tolist())]
  return float(np.mean(hits))


@pytest.mark.parametrize("classes", [10, 12])
def test_accuracies_top5_only_beyond_ten_classes(classes):
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(200, classes)).round(1)  # ties happen
  labels = rng.integers(0, classes, size=200)
  out = metrics.accuracies(scores, labels)
  assert out["top1"] == _ranked_reference(scores, labels, 1)
  if classes > 10:
    assert out["top5"] == _ranked_reference(scores, labels, 5)
    assert out["top5"] > out["top1"]
  else:
    assert set(out) == {"top1"}


def _knn_reference(train_f, train_y, test_f, k, temperature, classes):
  """The weighted cosine vote, one test example at a time."""
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  train_f, test_f = unit(train_f), unit(test_f)
  votes = np.zeros((len(test_f), classes))
  for i, f in enumerate(test_f):
    similarity = train_f @ f
    for j in np.argsort(-similarity)[:k]:
      votes[i, train_y[j]] += np.exp(similarity[j] / temperature)
  return votes


def test_knn_votes_match_numpy_over_padded_chunks():
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(12, 6)) * 2
  train_y = rng.integers(0, 12, size=60)
  test_y = rng.integers(0, 12, size=23)
  train_f = (centres[train_y] + rng.normal(size=(60, 6))).astype(np.float32)
  test_f = (centres[test_y] + rng.normal(size=(23, 6))).astype(np.float32)
  votes = _knn_reference(train_f, train_y, test_f, 5, 0.5, 12)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  np.testing.assert_allclose(
      metrics._knn_votes(  # pylint: disable=protected-access
          unit(train_f),
          train_y,
          unit(test_f),
          k=5,
          temperature=0.5,
          num_classes=12),
      votes,
      rtol=1e-5)
  out = metrics.knn(train_f,
                    train_y,
                    test_f,
                    test_y,
                    k=5,
                    temperature=0.5,
                    num_classes=12,
                    chunk=8)
  assert out == metrics.accuracies(votes, test_y)
  assert out["top1"] > 0.3  # the clusters are found


def _probe_config(epochs=20, batch_size=16):
  return ml_collections.ConfigDict(dict(
      epochs=epochs, batch_size=batch_size, learning_rate=0.05,
      weight_decay=1e-4))


def _fit(x, y, count, probe):
  return linear._fit_linear(  # pylint: disable=protected-access
      jnp.asarray(x),
      jnp.asarray(y),
      jnp.int32(count),
      jax.random.key(0),
      num_classes=3,
      epochs=probe.epochs,
      batch_size=probe.batch_size,
      learning_rate=probe.learning_rate,
      weight_decay=probe.weight_decay)


@pytest.mark.parametrize("count", [10, 40])  # one batch of all; batches of 16
def test_probe_ignores_its_padding_rows(count):
  """One program serves every label budget: the rows after `count` (here
  garbage) change nothing, whatever the padded size."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(count, 4)).astype(np.float32)
  y = rng.integers(0, 3, size=count).astype(np.int32)
  probe = _probe_config()
  exact = _fit(x, y, count, probe)
  garbage_x = np.concatenate([x, 1e3 * rng.normal(size=(50, 4))]).astype(
      np.float32)
  garbage_y = np.concatenate([y, np.full(50, 2)]).astype(np.int32)
  padded = _fit(garbage_x, garbage_y, count, probe)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               exact, padded)


def test_probe_separates_blobs_and_pads_to_the_split():
  rng = np.random.default_rng(3)
  centres = np.eye(3, 5) * 4
  train_y, test_y = rng.integers(0, 3, 90), rng.integers(0, 3, 60)
  train_x = centres[train_y] + rng.normal(size=(90, 5))
  test_x = centres[test_y] + rng.normal(size=(60, 5))
  out = linear.linear_probe(train_x[:30],
                            train_y[:30],
                            test_x,
                            test_y,
                            num_classes=3,
                            probe=_probe_config(),
                            seed=0,
                            pad_to=90)
  assert set(out) == {"top1"} and out["top1"] > 0.9


def test_per_class_subsets_are_fixed_per_seed_and_nested():
  labels = np.random.default_rng(4).integers(0, 5, size=200)
  one, five = (linear.per_class_subset(labels, n, seed=7) for n in (1, 5))
  assert sorted(np.bincount(labels[five])) == [5] * 5
  assert set(one) <= set(five)
  np.testing.assert_array_equal(five, linear.per_class_subset(labels, 5,
                                                              seed=7))
  assert not np.array_equal(five, linear.per_class_subset(labels, 5, 8))
