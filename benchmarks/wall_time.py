"""Where a study's wall time goes: XLA compilation, training, evaluation.

  python benchmarks/wall_time.py --config=configs/digits.py --workdir=DIR \
      [--config.seed=1] [--cache_dir=DIR]

Runs launch.py's study in this process (a fresh --workdir runs every phase)
and prints, per phase and in all, the seconds spent compiling (JAX's
tracing, lowering and backend-compile events, a persistent-cache load
included), in evaluation (feature passes, kNN, RankMe, probes:
evaluation's entry points: features.extract, metrics.knn / rankme,
linear.linear_probe, their compiles excluded) and the rest, "train"
(the training loop and its input pipeline, tf.data's XLA-compiled
augmentation included), with the number of programs compiled or loaded and
of persistent-cache hits.
--cache_dir sets JAX's persistent compilation cache (launch.py's default
unless given; "" disables it). `time` around the command adds the imports.
"""

import contextlib
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/*.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "A fresh directory.")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None, "Persistent compilation cache; None: launch.py's.")
flags.mark_flags_as_required(["config", "workdir"])


_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
# Tracing, lowering to StableHLO and XLA's compile (or a cache load).
_COMPILE_EVENTS = (_BACKEND_COMPILE, "/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration")


class Clock:
  """Wall time by category; an inner category's time leaves the outer's."""

  def __init__(self):
    self.seconds = {}
    self.counts = {"compiles": 0, "cache_hits": 0}
    self._stack = []

  def _add(self, category, seconds):
    self.seconds[category] = self.seconds.get(category, 0.0) + seconds

  @contextlib.contextmanager
  def track(self, category):
    start = time.perf_counter()
    self._stack.append([category, 0.0])
    try:
      yield
    finally:
      _, inner = self._stack.pop()
      spent = time.perf_counter() - start
      self._add(category, spent - inner)
      if self._stack:
        self._stack[-1][1] += spent

  def on_duration(self, event, duration, **kwargs):
    del kwargs
    if event not in _COMPILE_EVENTS:
      return
    if event == _BACKEND_COMPILE:
      self.counts["compiles"] += 1
    self._add("compile", duration)
    if self._stack:  # not also counted where it happened
      self._add(self._stack[-1][0], -duration)

  def on_event(self, event, **kwargs):
    del kwargs
    if event == "/jax/compilation_cache/cache_hits":
      self.counts["cache_hits"] += 1


def _wrap(clock, module, name, category):
  original = getattr(module, name)

  def wrapped(*args, **kwargs):
    with clock.track(category):
      return original(*args, **kwargs)

  setattr(module, name, wrapped)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # as launch.py
  from vicreg_haiku import launch_env  # pylint: disable=g-import-not-at-top
  launch_env.prepare(cache_dir=_CACHE_DIR.value)
  import jax  # pylint: disable=g-import-not-at-top
  from vicreg_haiku import runner  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import features  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import linear  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import metrics  # pylint: disable=g-import-not-at-top
  clock = Clock()
  jax.monitoring.register_event_duration_secs_listener(clock.on_duration)
  jax.monitoring.register_event_listener(clock.on_event)
  for module, name in ((features, "extract"), (metrics, "knn"),
                       (linear, "linear_probe"), (metrics, "rankme")):
    _wrap(clock, module, name, "evaluate")
  phases = {}
  run_phase = runner._run_phase  # pylint: disable=protected-access

  def timed_phase(phase, *args):
    before = dict(clock.seconds)
    with clock.track("train"):
      out = run_phase(phase, *args)
    phases[phase] = {k: v - before.get(k, 0.0)
                     for k, v in clock.seconds.items()}
    return out

  runner._run_phase = timed_phase  # pylint: disable=protected-access
  start = time.perf_counter()
  with clock.track("other"):
    runner.run(_CONFIG.value, _WORKDIR.value)
  total = time.perf_counter() - start
  print(f"\n{'phase':14s} {'compile':>8s} {'train':>8s} {'evaluate':>8s}"
        f" {'other':>8s}   (seconds)")
  for phase, split in list(phases.items()) + [("all", clock.seconds)]:
    print(f"{phase:14s} " + " ".join(
        f"{split.get(k, 0.0):8.1f}"
        for k in ("compile", "train", "evaluate", "other")))
  print(f"runner.run: {total:.1f} s; {clock.counts['compiles']} programs "
        f"compiled or loaded, {clock.counts['cache_hits']} persistent-cache "
        f"hits; {sys.argv[1:]}")


if __name__ == "__main__":
  app.run(main)
