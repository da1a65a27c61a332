"""A run's pictures, as uint8 RGB arrays: the same image goes to a PNG and
to TensorBoard (results.py and pretraining.py write them).

Pure functions of the data they show; matplotlib (Agg) renders the figures.
"""

import math
from typing import Mapping, Sequence

import numpy as np

# Pretraining curves: the loss, its terms, the lr and the monitors.
CURVES = ("loss", "invariance", "variance", "covariance", "prediction",
          "sigreg", "lr", "rankme", "embedding_std", "knn_top1")
# A view is upscaled (nearest neighbour) to at least this many pixels.
VIEW_PIXELS = 96
_DPI = 100


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  return pyplot


def render(figure) -> np.ndarray:
  """A matplotlib figure as uint8 [H, W, 3]; the figure is closed."""
  figure.canvas.draw()
  image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
  _pyplot().close(figure)
  return image


def curves(records: Sequence[Mapping[str, float]]) -> np.ndarray:
  """One panel per CURVES name the records hold, against the step."""
  names = [n for n in CURVES if any(n in r for r in records)]
  plt = _pyplot()
  cols = min(4, len(names))
  rows = math.ceil(len(names) / cols)
  figure, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows),
                              dpi=_DPI, squeeze=False)
  for axis in axes.flat[len(names):]:
    axis.set_visible(False)
  for axis, name in zip(axes.flat, names):
    points = [(r["step"], r[name]) for r in records if name in r]
    steps, values = zip(*points)
    axis.plot(steps, values, marker="o" if len(points) < 20 else None,
              markersize=3)
    axis.set_title(name)
    axis.set_xlabel("step")
    axis.grid(alpha=0.3)
  figure.tight_layout()
  return render(figure)


def label_efficiency(lines: Mapping[str, Mapping[float, float]],
                     points: Mapping[str, tuple[float, float]],
                     all_labels_at: float, budgets: Sequence[int]
                     ) -> np.ndarray:
  """Top-1 against labels per class, log scale, every label at the end.

  lines: {probe name: {labels per class: top-1}} (a line each);
  points: {name: (labels per class, top-1)} (fine-tune, from scratch);
  all_labels_at: the x of "all" (the split's labels per class).
  """
  plt = _pyplot()
  figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=_DPI)
  for name, values in lines.items():
    xs = sorted(values)
    axis.plot(xs, [values[x] for x in xs], marker="o", label=name)
  for (name, (x, y)), marker in zip(points.items(), "s^Dv"):
    axis.plot([x], [y], marker=marker, linestyle="none", markersize=8,
              label=name)
  ticks = list(budgets) + [all_labels_at]
  axis.set_xscale("log")
  axis.set_xticks(ticks)
  axis.set_xticklabels([str(n) for n in budgets]
                       + [f"all\n({all_labels_at:.0f})"])
  axis.minorticks_off()
  axis.set_xlabel("labels per class")
  axis.set_ylabel("test top-1")
  axis.grid(alpha=0.3)
  axis.legend(fontsize=8)
  figure.tight_layout()
  return render(figure)


def _project(x: np.ndarray, method: str) -> np.ndarray:
  """Standardised features in 2-D: "PCA", or "t-SNE" (scikit-learn's,
  PCA-initialised, a fixed seed: the same picture every time)."""
  from sklearn import decomposition, manifold  # pylint: disable=g-import-not-at-top
  x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
  if method == "PCA":
    return decomposition.PCA(2, random_state=0).fit_transform(x)
  perplexity = min(30.0, (len(x) - 1) / 3)  # sklearn needs < n
  # 500 iterations (sklearn's default is 1,000): the clusters have formed
  # by then on the digits and this picture's 2,000 points, at a fraction of
  # the time (BENCHMARKS.md).
  return manifold.TSNE(2, perplexity=perplexity, init="pca", max_iter=500,
                       random_state=0).fit_transform(x)


def embedding(features: Mapping[str, np.ndarray], labels: np.ndarray
              ) -> np.ndarray:
  """Each encoder's features in 2-D, coloured by class: a column per
  encoder, PCA in the top row and t-SNE below (PCA keeps distances and
  overlaps classes a probe separates; t-SNE keeps neighbourhoods)."""
  plt = _pyplot()
  methods = ("PCA", "t-SNE")
  figure, axes = plt.subplots(len(methods), len(features),
                              figsize=(4.6 * len(features),
                                       4.4 * len(methods)),
                              dpi=_DPI, squeeze=False)
  classes = np.unique(labels)
  colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
  for row, method in zip(axes, methods):
    for axis, (name, x) in zip(row, features.items()):
      xy = _project(x, method)
      for i, c in enumerate(classes):
        keep = labels == c
        axis.scatter(xy[keep, 0], xy[keep, 1], s=6, color=colours(i % 20),
                     label=str(c))
      # The central 98% of the points fill the panel; a few outliers would
      # otherwise squeeze the clusters into a corner.
      low, high = np.percentile(xy, [1, 99], axis=0)
      margin = 0.05 * (high - low)
      axis.set_xlim(low[0] - margin[0], high[0] + margin[0])
      axis.set_ylim(low[1] - margin[1], high[1] + margin[1])
      axis.set_title(f"{name}: test features, {method}")
      axis.set_xticks([])
      axis.set_yticks([])
  axes[0, -1].legend(title="class", fontsize=7, markerscale=2,
                     loc="center left", bbox_to_anchor=(1, 0.5))
  figure.tight_layout()
  return render(figure)


def to_uint8(x: np.ndarray, mean: Sequence[float],
             std: Sequence[float]) -> np.ndarray:
  """Normalised images back to uint8 pixels."""
  x = np.asarray(x, np.float32) * np.asarray(std) + np.asarray(mean)
  return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def _upscale(image: np.ndarray, factor: int) -> np.ndarray:
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def views(view_a: np.ndarray, view_b: np.ndarray, mean: Sequence[float],
          std: Sequence[float], gap: int = 4) -> np.ndarray:
  """Normalised view pairs [N, S, S, 3]: view 1 in the top row, view 2
  below, example i in column i; each view upscaled by nearest neighbour to
  at least VIEW_PIXELS, the rows labelled."""

  factor = max(1, math.ceil(VIEW_PIXELS / view_a.shape[1]))
  rows = [[_upscale(v, factor) for v in to_uint8(x, mean, std)]
          for x in (view_a, view_b)]
  size = rows[0][0].shape[0]
  n = len(rows[0])
  grid = np.full((2 * size + 3 * gap, n * (size + gap) + gap, 3), 255,
                 np.uint8)
  for r, row in enumerate(rows):
    top = gap + r * (size + gap)
    for i, view in enumerate(row):
      left = gap + i * (size + gap)
      grid[top:top + size, left:left + size] = view
  plt = _pyplot()
  label_width = 70
  height, width = grid.shape[0] + 24, grid.shape[1] + label_width
  figure = plt.figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
  figure.figimage(grid, xo=label_width, yo=0)
  for r, text in enumerate(("view 1", "view 2")):
    centre = grid.shape[0] - (gap + r * (size + gap) + size / 2)
    figure.text(4 / width, centre / height, text, va="center", fontsize=10)
  figure.text(0.5, 1 - 12 / height, f"augmented pairs, {view_a.shape[1]} px "
              f"shown at {factor}x", ha="center", va="center", fontsize=9)
  return render(figure)


# Frame colours of a neighbour: its class matches the query's, or not.
_MATCH, _MISMATCH, _NO_LABEL = (40, 160, 60), (210, 40, 40), (255, 255, 255)


def neighbours(panels: Mapping[str, tuple[np.ndarray, np.ndarray,
                                          np.ndarray | None]],
               first_label: str = "query", gap: int = 6,
               frame: int = 3) -> np.ndarray:
  """Query rows, side by side per panel: {title: (images uint8 [Q, 1 + k,
  S, S, 3] (the query, then its neighbours), similarities [Q, k], matches
  bool [Q, k] or None)}. Each image upscaled to at least VIEW_PIXELS, its
  cosine similarity under it; a neighbour's frame is green when its class
  is the query's, red when not (no frame without labels). The first image
  of a row is captioned `first_label`; a NaN similarity leaves its cell's
  caption empty."""
  first = next(iter(panels.values()))[0]
  factor = max(1, math.ceil(VIEW_PIXELS / first.shape[2]))
  size = first.shape[2] * factor + 2 * frame
  cell, text_h, title_h = size + gap, 16, 28
  rows, columns = first.shape[0], first.shape[1]
  panel_w = columns * cell + 2 * gap
  grid = np.full((title_h + rows * (cell + text_h) + gap,
                  len(panels) * panel_w, 3), 255, np.uint8)
  texts = []
  for p, (title, (images, sims, matches)) in enumerate(panels.items()):
    texts.append((p * panel_w + panel_w / 2, title_h / 2, title, 10))
    for q in range(rows):
      top = title_h + q * (cell + text_h)
      for j in range(columns):
        left = p * panel_w + gap + j * cell + (gap if j else 0)
        colour = _NO_LABEL
        if j and matches is not None:
          colour = _MATCH if matches[q, j - 1] else _MISMATCH
        grid[top:top + size, left:left + size] = colour
        grid[top + frame:top + size - frame,
             left + frame:left + size - frame] = _upscale(images[q, j],
                                                          factor)
        if j == 0:
          label = first_label
        else:  # NaN: a blank cell
          label = "" if np.isnan(sims[q, j - 1]) else f"{sims[q, j - 1]:.3f}"
        texts.append((left + size / 2, top + size + text_h / 2, label, 8))
  plt = _pyplot()
  height, width = grid.shape[:2]
  figure = plt.figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
  figure.figimage(grid, xo=0, yo=0)
  for x, y, text, size_pt in texts:
    figure.text(x / width, 1 - y / height, text, ha="center", va="center",
                fontsize=size_pt)
  return render(figure)
