"""Exact nearest neighbours and near-duplicates by cosine similarity.

Blocked matrix products in float32: memory holds one block of rows against
one block of keys, so the keys may be a memory-mapped .npy of millions of
rows. Exact (no index, no approximation): BENCHMARKS.md has the cost.
"""

from typing import Iterator

import numpy as np

# Rows of a block: 4096 x 4096 float32 similarities are 64 MiB.
BLOCK = 4096


def unit_rows(x: np.ndarray) -> np.ndarray:
  """Rows scaled to unit L2 norm, float32 (an all-zero row stays zero)."""
  x = np.asarray(x, np.float32)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.maximum(norms, np.finfo(np.float32).tiny)


def _blocks(n: int, block: int) -> Iterator[slice]:
  for start in range(0, n, block):
    yield slice(start, min(start + block, n))


def nearest(queries: np.ndarray, keys: np.ndarray, k: int, *,
            exclude: np.ndarray | None = None, block: int = BLOCK
            ) -> tuple[np.ndarray, np.ndarray]:
  """The k keys most cosine-similar to each query: (indices [Q, k] int64,
  similarities [Q, k] float32), most similar first, ties to the lower index.

  exclude[q]: a key index query q may not return (itself, when the queries
  are keys), or -1. k is capped at the keys available.
  """
  q = unit_rows(queries)
  k = min(k, len(keys) - (exclude is not None))
  best_sim = np.full((len(q), 0), -np.inf, np.float32)
  best_idx = np.zeros((len(q), 0), np.int64)
  for part in _blocks(len(keys), block):
    sim = q @ unit_rows(keys[part]).T
    idx = np.broadcast_to(np.arange(part.start, part.stop), sim.shape)
    if exclude is not None:
      sim = np.where(idx == np.asarray(exclude)[:, None], -np.inf, sim)
    # The block's k best, then merged with the k best so far.
    sim, idx = _top_k(sim, idx, k)
    best_sim, best_idx = _top_k(np.concatenate([best_sim, sim], axis=1),
                                np.concatenate([best_idx, idx], axis=1), k)
  return best_idx, best_sim


def _top_k(sim: np.ndarray, idx: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
  """Each row's k largest similarities, most similar first, equal ones by
  index. A partition, then a sort of the k (a full sort of every block
  costs ten times the matrix product); rows where the partition had to
  choose among equal similarities at the k-th place are sorted whole."""
  if sim.shape[1] > k:
    part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    kept = np.take_along_axis(sim, part, axis=1)
    kth = kept.min(axis=1, keepdims=True)
    tied = (sim == kth).sum(axis=1) != (kept == kth).sum(axis=1)
    if tied.any():
      part[tied] = np.argsort(-sim[tied], axis=1, kind="stable")[:, :k]
    sim = np.take_along_axis(sim, part, axis=1)
    idx = np.take_along_axis(idx, part, axis=1)
  order = np.lexsort((idx, -sim), axis=1)
  return np.take_along_axis(sim, order, axis=1), np.take_along_axis(
      idx, order, axis=1)


class _UnionFind:
  """Disjoint sets over 0..n-1 with path halving and union by size."""

  def __init__(self, n: int):
    self.parent = np.arange(n)
    self.size = np.ones(n, np.int64)

  def find(self, i: int) -> int:
    while self.parent[i] != i:
      self.parent[i] = self.parent[self.parent[i]]
      i = self.parent[i]
    return int(i)

  def union(self, i: int, j: int) -> None:
    i, j = self.find(i), self.find(j)
    if i == j:
      return
    if self.size[i] < self.size[j]:
      i, j = j, i
    self.parent[j] = i
    self.size[i] += self.size[j]


def duplicate_groups(x: np.ndarray, threshold: float, *,
                     block: int = BLOCK) -> list[list[int]]:
  """Groups of rows linked by cosine similarity >= threshold (a pair in a
  group may be less similar when a third links them), each sorted, largest
  group first, then by first row. Rows in no pair are in no group."""
  sets = _UnionFind(len(x))
  for rows in _blocks(len(x), block):
    a = unit_rows(x[rows])
    for cols in _blocks(len(x), block):
      if cols.stop <= rows.start:
        continue  # the pair was seen with the blocks the other way round
      sim = a @ unit_rows(x[cols]).T
      for i, j in zip(*np.nonzero(sim >= threshold)):
        i, j = rows.start + i, cols.start + j
        if i < j:
          sets.union(i, j)
  groups = {}
  for i in range(len(x)):
    if sets.size[sets.find(i)] > 1:
      groups.setdefault(sets.find(i), []).append(i)
  return sorted(groups.values(), key=lambda g: (-len(g), g[0]))
