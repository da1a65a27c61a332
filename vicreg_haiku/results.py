"""results.json, results.md and the pretraining curves of a workdir."""

import json
import os
from typing import Mapping

import numpy as np
import tensorflow as tf

from vicreg_haiku import writers

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CURVES_PNG = "curves.png"
_CURVES = ("loss", "invariance", "variance", "covariance")


def read(workdir: str) -> dict[str, dict]:
  path = os.path.join(workdir, RESULTS_JSON)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def table(results: Mapping[str, Mapping]) -> str:
  lines = ["| phase / probe | top-1 | labels / steps |", "|---|---|---|"]
  for name, entry in results.items():
    extra = entry.get("labels", entry.get("steps", ""))
    top1 = f"{entry['top1']:.4f}" if "top1" in entry else ""
    lines.append(f"| {name} | {top1} | {extra} |")
  return "\n".join(lines) + "\n"


def update(workdir: str, entries: Mapping[str, Mapping]) -> dict[str, dict]:
  """Merges `entries` into results.json and rewrites results.md."""
  results = read(workdir)
  results.update(entries)
  writers.write_atomically(os.path.join(workdir, RESULTS_JSON),
                    json.dumps(results, indent=2) + "\n")
  writers.write_atomically(os.path.join(workdir, RESULTS_MD), table(results))
  return results


def plot_curves(workdir: str, phase: str = "pretrain") -> str | None:
  """curves.png: the pretraining loss and its three terms against steps."""
  records = writers.read_metrics(os.path.join(workdir, phase))
  if not records:
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  steps = np.array([r["step"] for r in records])
  figure, axes = plt.subplots(1, len(_CURVES), figsize=(4 * len(_CURVES), 3))
  for axis, name in zip(axes, _CURVES):
    axis.plot(steps, [r[name] for r in records])
    axis.set_title(name)
    axis.set_xlabel("step")
  figure.tight_layout()
  path = os.path.join(workdir, CURVES_PNG)
  with tf.io.gfile.GFile(path, "wb") as f:
    figure.savefig(f, format="png", dpi=80)
  plt.close(figure)
  return path
