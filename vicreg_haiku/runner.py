"""The study: pretrain, linear probe, fine-tune, from-scratch baseline.

`mode="all"` runs the phases in order and skips those whose results are in
WORKDIR/results.json; every phase resumes from its newest checkpoint.
"""

import json
import os
from typing import Collection

import jax
import ml_collections
import tensorflow as tf
from absl import logging

from vicreg_haiku import config_checks
from vicreg_haiku import pretraining
from vicreg_haiku.data import datasets
from vicreg_haiku.data import device_augmentations
from vicreg_haiku.data import sources
from vicreg_haiku.evaluation import classifier
from vicreg_haiku.evaluation import official_probe
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.evaluation import probing
from vicreg_haiku.evaluation import results
from vicreg_haiku.models import precision
from vicreg_haiku.models import transforms
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import defaults
from vicreg_haiku.utils import errors
from vicreg_haiku.utils import writers

PHASES = ("pretrain", "linear_probe", "finetune", "supervised")
# The phases that train or evaluate on labels.
LABELLED_PHASES = ("linear_probe", "finetune", "supervised")
# A phase is finished when results.json holds one of these entries
# (pretraining on unlabelled data has no kNN monitor to report).
_RESULTS_OF = {"pretrain": ("pretrain_knn", "pretrain"),
               "linear_probe": ("linear_probe",), "finetune": ("finetune",),
               "supervised": ("supervised",)}
# Keys that may change between runs in one workdir.
_FREE_KEYS = frozenset({"mode", "pretrain.max_steps", "allow_config_change"})


def _config_changes(old: dict, config: ml_collections.ConfigDict
                    ) -> list[str]:
  """The keys whose values differ, as "key: old -> new". A key that a newer
  version added is missing from an older run's config.json: at the value
  that older code ran with (its default, or defaults.OLDER_RUN_VALUES') it
  is no change, so a run survives an upgrade of the code it runs on. Nor is
  a setting the encoder ignores (a ViT's model.width): a ViT run written
  with --config.model.width, now refused, resumes without it."""
  old = dict(config_checks.leaves(defaults.as_run_config(old)))
  new = dict(config_checks.leaves(json.loads(config.to_json())))
  old = {k: old.get(k) for k in set(old) | set(new)}
  free = _FREE_KEYS | {f"model.{key}"
                       for key in transforms.ignored_settings(config)}
  return [f"{k}: {old[k]!r} -> {new.get(k)!r}" for k in sorted(old)
          if k not in free and old[k] != new.get(k)]


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Checks the workdir is writable and holds this config's run, or none."""
  resolved = json.loads(config.to_json())
  path = os.path.join(workdir, pretrained.CONFIG_FILE)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      changes = _config_changes(json.load(f), config)
    if changes and not config.allow_config_change:
      raise errors.ConfigError(
          f"{workdir} holds a run of a different config ({'; '.join(changes)});"
          " use a new --workdir, or --config.allow_config_change=True to "
          "resume with the new settings")
  if not parallel.is_chief():
    return
  try:
    tf.io.gfile.makedirs(workdir)
    writers.write_atomically(path, json.dumps(resolved, indent=2) + "\n")
  except (OSError, tf.errors.OpError) as error:
    raise errors.ConfigError(
        f"--workdir={workdir} is not writable ({error}); choose another"
    ) from None


def choose_augment_on(config: ml_collections.ConfigDict,
                      workdir: str) -> None:
  """Replaces pretrain.augment_on="auto" by what it picks, so config.json
  records it and says so on the console: a resumed run keeps what its
  config.json records (a workdir of either value resumes without a config
  change, and exactly), a new one picks by JAX's backend
  (device_augmentations.resolve)."""
  if config.pretrain.augment_on != "auto":
    return
  path = os.path.join(workdir, pretrained.CONFIG_FILE)
  recorded = None
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      recorded = defaults.as_run_config(json.load(f))["pretrain"]["augment_on"]
  if recorded in ("host", "device"):
    chosen, why = recorded, f"as the run in {workdir}"
  else:
    chosen = device_augmentations.resolve("auto")
    why = f"JAX backend: {jax.default_backend()}"
  config.pretrain.augment_on = chosen
  if parallel.is_chief():
    writers.console(f"pretrain.augment_on=auto: {chosen} ({why})")


def _imported_weights(config: ml_collections.ConfigDict,
                      workdir: str) -> transforms.Weights | None:
  """config.model.init_from, read before anything is written (config.json
  included) and refused there if unusable, when a phase will start from it:
  none does once the workdir has pretraining checkpoints (a resumed run never
  imports again), and `supervised` never does. A probe or fine-tune alone
  without either is refused."""
  if config.mode == "supervised" or pretrained.has_checkpoint(workdir):
    return None
  if config.model.init_from is not None:
    return pretrained.import_init_from(config)
  if config.mode in ("linear_probe", "finetune"):
    directory = os.path.join(workdir, pretrain_step.PHASE, "checkpoints")
    raise pretrained.MissingEncoderError(
        f"no pretrained encoder in {directory}: run the pretrain phase first "
        "(--config.mode=pretrain or all) or set --config.model.init_from")
  return None


def _check_data(config: ml_collections.ConfigDict, phases) -> None:
  """Reads (and on a first run indexes) every split the phases use; refuses
  missing data, labelled phases on unlabelled splits, and a labelled set
  that does not fit the phase training on it (classifier's and
  official_probe's train_data_problem),
  before anything is written. Process 0 indexes a folder first; the others
  then find its index (a shared index_dir) instead of checking every file
  again."""
  def check():
    splits = [config.dataset.train_split, config.dataset.test_split]
    if "pretrain" in phases:
      splits.insert(0, config.dataset.pretrain_split)
    for split in splits:
      datasets.num_examples(config, split)
    labelled = [p for p in phases if p in LABELLED_PHASES]
    problem = labelled and datasets.labels_missing(config)
    if problem:
      raise datasets.DataError(
          f"the {labelled[0]} phase needs labels: {problem}; or run only "
          "--config.mode=pretrain")
    for phase in phases:
      problem = None
      if phase in classifier.PHASES:
        problem = classifier.train_data_problem(config, phase)
      elif phase == "linear_probe":
        problem = official_probe.train_data_problem(config)
      if problem:
        raise datasets.DataError(problem)

  if jax.process_count() == 1:
    return check()
  failure = ""
  if parallel.is_chief():
    try:
      check()
    except Exception as error:  # pylint: disable=broad-except
      # Whatever stops process 0 here must reach the others, which wait in
      # the broadcast below; they then raise the same user error.
      failure = str(error) or type(error).__name__
      if not isinstance(error, datasets.DataError):
        parallel.broadcast_text(failure)
        raise
  failure = parallel.broadcast_text(failure)
  if failure:
    raise datasets.DataError(failure)
  if not parallel.is_chief():
    check()


def _run_phase(phase: str, config, workdir: str, mesh,
               imported: transforms.Weights | None) -> dict[str, dict]:
  if phase == "pretrain":
    return pretraining.run(config, workdir, mesh, imported)
  if phase == "linear_probe":
    return probing.run(config, workdir, mesh, imported)
  return classifier.run(config, workdir, phase, mesh, imported)


def _warn_if_slow(compute_dtype: str) -> None:
  message = precision.slow_precision_warning(compute_dtype,
                                             jax.default_backend())
  if message is not None and parallel.is_chief():
    logging.warning("%s", message)
    writers.console(f"WARNING: {message}")


def run(config: ml_collections.ConfigDict, workdir: str,
        overridden: Collection[str] = ()) -> dict[str, dict]:
  """Runs config.mode's phases in `workdir`; returns results.json's content.
  `overridden`: the keys the command line set (they win over the config
  file's vit_defaults)."""
  parallel.maybe_initialize_distributed(config.distributed)
  # Before adopting another workdir's encoder, whose shape keys then win.
  vit = config_checks.apply_vit_defaults(config, overridden)
  pretrained.adopt_encoder_workdir(config, workdir)
  config_checks.validate(config, jax.device_count())
  unused = config_checks.unused_settings(config)
  for line in (vit, unused):
    if line and parallel.is_chief():
      writers.console(line)
  _warn_if_slow(config.precision)
  phases = PHASES if config.mode == "all" else (config.mode,)
  # Missing, unprepared or unlabelled data fails here, before anything is
  # written.
  held_out = sources.hold_out(config)
  _check_data(config, phases)
  imported = _imported_weights(config, workdir)
  choose_augment_on(config, workdir)
  prepare_workdir(config, workdir)
  if held_out and parallel.is_chief():
    writers.console(f"data: {held_out}")
    results.update(workdir, {results.HELD_OUT: {
        "fraction": config.dataset.held_out_fraction,
        "test_split": config.dataset.test_split,
        "train_split": config.dataset.train_split,
        "test_examples": datasets.num_examples(config,
                                               config.dataset.test_split),
        "train_examples": datasets.num_examples(config,
                                                config.dataset.train_split),
        "why": held_out}})
  precision.set_compute_dtype(config.precision)
  mesh = parallel.make_mesh()
  finished = results.read(workdir)
  for phase in phases:
    if config.mode == "all" and any(r in finished
                                    for r in _RESULTS_OF[phase]):
      writers.console(f"{phase}: finished already (results.json), skipped")
      continue
    entries = _run_phase(phase, config, workdir, mesh, imported)
    if parallel.is_chief():
      finished = results.update(workdir, entries)
  if parallel.is_chief():
    labelled = datasets.labels_missing(config) is None
    results.write_figures(workdir,
                          datasets.num_classes(config) if labelled else None)
    writers.console(results.table(finished))
    writers.console(f"results: {os.path.join(workdir, results.RESULTS_MD)}; "
                    f"TensorBoard: tensorboard --logdir={workdir}")
  return finished
