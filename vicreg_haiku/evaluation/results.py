"""results.json, results.md and the pictures of a workdir.

The table groups each probe with its reference lines (the same probe of a
random-init encoder and of the raw pixels) and ends in one line saying what
the numbers show. The figures (plots.py) are written as PNGs in the workdir
and as images in TensorBoard.
"""

import io
import json
import math
import os
import re
from typing import Mapping

import numpy as np
import tensorflow as tf

from vicreg_haiku.evaluation import plots
from vicreg_haiku.evaluation import probing
from vicreg_haiku.utils import writers

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CURVES_PNG = "curves.png"
LABEL_EFFICIENCY_PNG = "label_efficiency.png"
EMBEDDING_PNG = "embedding.png"
# results.json's note that the scores are on a held-out part of the train
# split (sources.hold_out), not a separate test split.
HELD_OUT = "held_out"
# The pretrained encoder's column is named by its loss (config.loss.name, in
# the pretraining entry); "VICReg" where no entry says (an adopted encoder).
_METHODS = {"vicreg": "VICReg", "sigreg": "LeJEPA"}
_PROBE_COLUMNS = {"vicreg": "VICReg", "random_init": "random init",
                  "raw_pixels": "raw pixels"}
_END_TO_END = {"finetune": "fine-tune (VICReg init)",
               "supervised": "from scratch"}
_BUDGET = re.compile(rf"^{probing.ENCODERS['vicreg']}_(\d+)_per_class$")


def read(workdir: str) -> dict[str, dict]:
  path = os.path.join(workdir, RESULTS_JSON)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _method(results: Mapping[str, Mapping]) -> str:
  """The name of the loss the probed encoder was pretrained with."""
  entry = results.get("pretrain") or results.get("pretrain_knn") or {}
  return _METHODS[entry.get("loss", "vicreg")]


def _probe_columns(results: Mapping[str, Mapping]) -> dict[str, str]:
  return dict(_PROBE_COLUMNS, vicreg=_method(results))


def _end_to_end_columns(results: Mapping[str, Mapping]) -> dict[str, str]:
  return dict(_END_TO_END, finetune=f"fine-tune ({_method(results)} init)")


def _budgets(results: Mapping[str, Mapping]) -> list[int | None]:
  """The probes' labels per class in results: None (all), then ascending."""
  found = sorted(int(m.group(1)) for m in map(_BUDGET.match, results) if m)
  return ([None] if probing.ENCODERS["vicreg"] in results else []) + found


def _cell(entry: Mapping | None) -> str:
  if entry is None or "top1" not in entry:
    return ""
  text = f"{entry['top1']:.4f}"
  if "top5" in entry:
    text += f" (top-5 {entry['top5']:.4f})"
  if "best_top1" in entry:  # the official protocol's best epoch
    text += f", best epoch {entry['best_top1']:.4f}"
  return text


def _budget_name(per_class: int | None) -> str:
  return "all labels" if per_class is None else f"{per_class} per class"


def _pretrain_rows(results: Mapping[str, Mapping]) -> list[str]:
  """Pretraining on unlabelled data: its length, as there is no kNN."""
  if "pretrain" not in results:
    return []
  return ["| pretraining (unlabelled data: no kNN monitor) | steps |",
          "|---|---|", f"| done | {results['pretrain'].get('steps', '')} |"]


def _probe_rows(results: Mapping[str, Mapping]) -> list[str]:
  rows = []
  for per_class in _budgets(results):
    names = {e: probing.result_name(e, per_class) for e in _PROBE_COLUMNS}
    labels = results[names["vicreg"]].get("labels", "")
    rows.append(f"| {_budget_name(per_class)} | {labels} | " + " | ".join(
        _cell(results.get(n)) for n in names.values()) + " |")
  if "pretrain_knn" in results:
    knn = results["pretrain_knn"]
    rows.append(f"| kNN monitor after {knn.get('steps', '?')} steps | | "
                f"{_cell(knn)} | | |")
  if not rows:
    return []
  protocol = results.get(probing.PHASE, {}).get("protocol")
  title = "linear probe, frozen encoder" + (
      f" ({protocol} protocol)" if protocol else "")
  return ([f"| {title} | labels | "
           + " | ".join(_probe_columns(results).values()) + " |",
           "|---|---|---|---|---|"] + rows)


def _trained_on(entry: Mapping) -> str:
  """An end-to-end entry's labelled set, in words."""
  fraction, dataset = entry.get("label_fraction"), entry.get("train_dataset")
  if fraction is None:
    return dataset or "all labels"
  return f"{100 * fraction:g}% of {dataset or 'the labels'}"


def _end_to_end_groups(results: Mapping[str, Mapping]
                       ) -> dict[tuple, list[str]]:
  """{(labelled set, steps, labels): the phases trained so}, in order: a
  fine-tune and its baseline share a row when they saw the same labels."""
  groups = {}
  for phase in _END_TO_END:
    if phase in results:
      entry = results[phase]
      key = (_trained_on(entry), entry.get("steps", "?"),
             entry.get("labels", ""))
      groups.setdefault(key, []).append(phase)
  return groups


def _end_to_end_rows(results: Mapping[str, Mapping]) -> list[str]:
  groups = _end_to_end_groups(results)
  if not groups:
    return []
  return ["| trained end to end | labels | "
          + " | ".join(_end_to_end_columns(results).values()) + " |",
          "|---|---|---|---|"] + [
              f"| {trained_on}, {steps} steps | {labels} | "
              + " | ".join(_cell(results[p]) if p in phases else ""
                           for p in _END_TO_END) + " |"
              for (trained_on, steps, labels), phases in groups.items()]


def _other_rows(results: Mapping[str, Mapping]) -> list[str]:
  """Entries neither table knows (another protocol's), as name | top-1."""
  known = {"pretrain", "pretrain_knn", HELD_OUT, *_END_TO_END}
  for per_class in _budgets(results):
    known.update(probing.result_name(e, per_class) for e in _PROBE_COLUMNS)
  rows = [f"| {name} | {_cell(entry)} |" for name, entry in results.items()
          if name not in known]
  return ["| other | top-1 |", "|---|---|"] + rows if rows else []


def _points(a: Mapping, b: Mapping) -> float:
  return 100 * (a["top1"] - b["top1"])


def summary(results: Mapping[str, Mapping]) -> str | None:
  """One line: what the probes and the end-to-end runs show, in points of
  top-1, at the budget nearest 10 labels per class."""
  budgets = _budgets(results)
  parts = []
  if budgets:
    per_class = min(budgets, key=lambda n: abs(math.log((n or 1e9) / 10)))
    pretrained, random_init, raw = (
        results.get(probing.result_name(e, per_class)) for e in _PROBE_COLUMNS)
    where = ("with every label" if per_class is None
             else f"at {per_class} labels per class")
    if pretrained and raw and random_init:
      parts.append(
          f"{_method(results)} probe {_points(pretrained, raw):+.1f} points of"
          f" top-1 against raw pixels and {_points(pretrained, random_init):+.1f}"
          f" against a random-init encoder {where} "
          f"({pretrained['top1']:.3f}, {raw['top1']:.3f}, "
          f"{random_init['top1']:.3f})")
  if list(_end_to_end_groups(results).values()) == [list(_END_TO_END)]:
    finetune, scratch = results["finetune"], results["supervised"]
    parts.append(f"fine-tune {_points(finetune, scratch):+.1f} against the "
                 f"same network from scratch ({finetune['top1']:.3f}, "
                 f"{scratch['top1']:.3f})")
  return "; ".join(parts) + "." if parts else None


def table(results: Mapping[str, Mapping]) -> str:
  """results.md: the probe table, the end-to-end table, the summary line."""
  blocks = [_pretrain_rows(results), _probe_rows(results),
            _end_to_end_rows(results), _other_rows(results)]
  if HELD_OUT in results:
    blocks.insert(0, ["Scored on held-out images: "
                      f"{results[HELD_OUT]['why']}."])
  text = "\n\n".join("\n".join(b) for b in blocks if b)
  line = summary(results)
  return text + (f"\n\n{line}" if line else "") + "\n"


def update(workdir: str, entries: Mapping[str, Mapping]) -> dict[str, dict]:
  """Merges `entries` into results.json and rewrites results.md."""
  results = read(workdir)
  results.update(entries)
  writers.write_atomically(os.path.join(workdir, RESULTS_JSON),
                           json.dumps(results, indent=2) + "\n")
  writers.write_atomically(os.path.join(workdir, RESULTS_MD), table(results))
  return results


def write_png(path: str, image: np.ndarray) -> None:
  """`image` (uint8 [H, W, 3]) as the PNG `path` (local or gs://)."""
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(tf.io.encode_png(image).numpy())


def write_picture(path: str, phase_dir: str, name: str,
                  image: np.ndarray) -> None:
  """`image` (uint8 [H, W, 3]) as the PNG `path` and as the TensorBoard
  image `name` of `phase_dir`."""
  write_png(path, image)
  writer = writers.MetricsWriter(phase_dir)
  writer.write_image(0, name, image)
  writer.close()


def _label_efficiency(results: Mapping[str, Mapping],
                      num_classes: int | None):
  budgets = [n for n in _budgets(results) if n is not None]
  every = results.get(probing.ENCODERS["vicreg"])
  if not budgets or every is None or num_classes is None:
    return None
  all_at = every["labels"] / num_classes
  lines = {}
  for encoder, label in _probe_columns(results).items():
    values = {(n or all_at): results[probing.result_name(encoder, n)]["top1"]
              for n in [None] + budgets
              if probing.result_name(encoder, n) in results}
    lines[f"{label} probe"] = values
  points = {label: (results[p]["labels"] / num_classes, results[p]["top1"])
            for p, label in _end_to_end_columns(results).items()
            if p in results}
  return plots.label_efficiency(lines, points, all_at, budgets)


def write_figures(workdir: str, num_classes: int | None) -> list[str]:
  """curves.png, label_efficiency.png and embedding.png from what the
  workdir holds (each also in TensorBoard); returns the paths written.
  num_classes None: unlabelled data, no probes to picture."""
  written = []

  def write(name, phase, image):
    if image is not None:
      path = os.path.join(workdir, name)
      write_picture(path, os.path.join(workdir, phase),
                    name.removesuffix(".png"), image)
      written.append(path)

  records = writers.read_metrics(os.path.join(workdir, "pretrain"))
  write(CURVES_PNG, "pretrain", plots.curves(records) if records else None)
  results = read(workdir)
  write(LABEL_EFFICIENCY_PNG, probing.PHASE,
        _label_efficiency(results, num_classes))
  path = os.path.join(workdir, probing.PHASE, probing.EMBEDDING_FILE)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path, "rb") as f:
      data = dict(np.load(io.BytesIO(f.read())))
    labels = data.pop("labels")
    columns = _probe_columns(results)
    features = {columns[k]: v for k, v in data.items()}
    write(EMBEDDING_PNG, probing.PHASE, plots.embedding(features, labels))
  return written
