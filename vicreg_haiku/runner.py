"""The study: pretrain, linear probe, fine-tune, from-scratch baseline.

`mode="all"` runs the phases in order and skips those whose results are in
WORKDIR/results.json; every phase resumes from its newest checkpoint.
"""

import json
import os

import jax
import ml_collections
import tensorflow as tf
from absl import logging

from vicreg_haiku import classifier
from vicreg_haiku import config_checks
from vicreg_haiku import datasets
from vicreg_haiku import parallel
from vicreg_haiku import precision
from vicreg_haiku import pretrained
from vicreg_haiku import pretraining
from vicreg_haiku import probing
from vicreg_haiku import results
from vicreg_haiku import writers

PHASES = ("pretrain", "linear_probe", "finetune", "supervised")
# A phase is finished when results.json holds this entry.
_RESULT_OF = {"pretrain": "pretrain_knn", "linear_probe": "linear_probe",
              "finetune": "finetune", "supervised": "supervised"}
# Keys that may change between runs in one workdir.
_FREE_KEYS = frozenset({"mode", "pretrain.max_steps", "allow_config_change"})


def _flatten(tree, prefix=""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _config_changes(old: dict, new: dict) -> list[str]:
  old, new = dict(_flatten(old)), dict(_flatten(new))
  return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
          for k in sorted(set(old) | set(new))
          if k not in _FREE_KEYS and old.get(k) != new.get(k)]


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Checks the workdir is writable and holds this config's run, or none."""
  resolved = json.loads(config.to_json())
  path = os.path.join(workdir, pretrained.CONFIG_FILE)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      changes = _config_changes(json.load(f), resolved)
    if changes and not config.allow_config_change:
      raise config_checks.ConfigError(
          f"{workdir} holds a run of a different config ({'; '.join(changes)});"
          " use a new --workdir, or --config.allow_config_change=True to "
          "resume with the new settings")
  if not parallel.is_chief():
    return
  try:
    tf.io.gfile.makedirs(workdir)
    writers.write_atomically(path, json.dumps(resolved, indent=2) + "\n")
  except (OSError, tf.errors.OpError) as error:
    raise config_checks.ConfigError(
        f"--workdir={workdir} is not writable ({error}); choose another") from None


def _check_encoder_exists(config: ml_collections.ConfigDict,
                          workdir: str) -> None:
  """A probe or fine-tune alone needs pretraining checkpoints: refuse before
  anything is written (config.json included) when there are none."""
  if config.mode not in ("linear_probe", "finetune"):
    return
  directory = os.path.join(workdir, pretraining.PHASE, "checkpoints")
  steps = []
  if tf.io.gfile.isdir(directory):
    steps = [n.rstrip("/") for n in tf.io.gfile.listdir(directory)
             if n.rstrip("/").isdigit()]
  if not steps:
    raise pretrained.MissingEncoderError(
        f"no pretrained encoder in {directory}: run the pretrain phase first "
        "(--config.mode=pretrain or all)")


def _run_phase(phase: str, config, workdir: str, mesh) -> dict[str, dict]:
  if phase == "pretrain":
    return pretraining.run(config, workdir, mesh)
  if phase == "linear_probe":
    return probing.run(config, workdir, mesh)
  return classifier.run(config, workdir, phase, mesh)


def _warn_if_slow(compute_dtype: str) -> None:
  message = precision.slow_precision_warning(compute_dtype,
                                             jax.default_backend())
  if message is not None and parallel.is_chief():
    logging.warning("%s", message)
    writers.console(f"WARNING: {message}")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
  """Runs config.mode's phases in `workdir`; returns results.json's content."""
  parallel.maybe_initialize_distributed(config.distributed)
  config_checks.validate(config, jax.device_count())
  _warn_if_slow(config.precision)
  # Missing or unprepared data fails here, before anything is written.
  datasets.num_examples(config, config.dataset.test_split)
  _check_encoder_exists(config, workdir)
  prepare_workdir(config, workdir)
  precision.set_compute_dtype(config.precision)
  mesh = parallel.make_mesh()
  phases = PHASES if config.mode == "all" else (config.mode,)
  finished = results.read(workdir)
  for phase in phases:
    if config.mode == "all" and _RESULT_OF[phase] in finished:
      writers.console(f"{phase}: finished already (results.json), skipped")
      continue
    entries = _run_phase(phase, config, workdir, mesh)
    if parallel.is_chief():
      finished = results.update(workdir, entries)
  if parallel.is_chief():
    results.write_figures(workdir, datasets.num_classes(config))
    writers.console(results.table(finished))
    writers.console(f"results: {os.path.join(workdir, results.RESULTS_MD)}; "
                    f"TensorBoard: tensorboard --logdir={workdir}")
  return finished
