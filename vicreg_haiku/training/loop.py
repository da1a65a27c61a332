"""The training loop every phase shares: resume, step, log, checkpoint.

A run is resumable at any step because the batch at step k is a pure function
of (config, k) (datasets.py) and the checkpoint holds everything else: step,
params, BN state and optimizer state. Rerunning the same command after a
preemption continues exactly where the newest good checkpoint left off.
"""

import dataclasses
import math
import os
import signal
import time
from typing import Callable, Iterator, Mapping

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from vicreg_haiku.models import transforms
from vicreg_haiku.training import checkpointing
from vicreg_haiku.training import host_memory
from vicreg_haiku.training import parallel
from vicreg_haiku.utils import writers

StepFn = Callable[[transforms.TrainState, Mapping[str, jax.Array]],
                  tuple[transforms.TrainState, Mapping[str, jax.Array]]]


class NonFiniteError(RuntimeError):
  pass


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint of the current step was saved."""


class HostLost(Exception):
  """Another process of a multi-process job died (or its host did) mid-phase:
  this one's collectives fail. Its message is one line: the lost process,
  the newest complete checkpoint and the cause."""


def cadence(every: int | None, total_steps: int, points: int) -> int:
  """`every`, or for None the cadence giving about `points` points (at
  least `points` when the run has that many steps) over `total_steps`."""
  if every is not None:
    return every
  return max(1, total_steps // points)


@dataclasses.dataclass
class LoopConfig:
  phase: str
  phase_dir: str
  total_steps: int
  examples_per_step: int
  log_every_steps: int
  checkpoint_every_steps: int
  checkpoint_every_seconds: float = math.inf
  skip_nonfinite: bool = False
  # False: metrics.jsonl without TensorBoard, which needs TensorFlow (the
  # step benchmark's loop on an accelerator image that has none).
  tensorboard: bool = True


class _SigtermFlag:
  """Turns SIGTERM (the preemption notice) into a flag the loop polls."""

  def __init__(self):
    self.raised = False
    self._previous = None

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)


def _nonfinite_names(metrics: Mapping[str, np.ndarray]) -> list[str]:
  return [
      k for k, v in metrics.items()
      if np.issubdtype(np.asarray(v).dtype, np.floating) and
      not np.all(np.isfinite(v))
  ]


def restore_or_init(loop: LoopConfig, initial: transforms.TrainState,
                    sharding):
  """The newest good checkpoint of the phase, else `initial`, placed as
  `sharding` (a sharding or a tree of them, as jax.device_put takes)."""
  mngr = checkpointing.manager(os.path.join(loop.phase_dir, "checkpoints"))
  # Orbax restores each array to its target's sharding.
  initial = jax.device_put(initial, sharding)
  restored = checkpointing.restore_latest(mngr, initial,
                                         set_aside_corrupt=True)
  state = initial if restored is None else restored
  return mngr, state


def run(
    loop: LoopConfig,
    initial: transforms.TrainState,
    step_fn: StepFn,
    batches: Callable[[int], Iterator[Mapping[str, np.ndarray]]],
    mesh,
    on_log: Callable[[int, transforms.TrainState], Mapping[str, float]] |
    None = None,
    on_metrics: Callable[[int, Mapping[str, float]], None] | None = None,
    sharding=None) -> transforms.TrainState:
  """Trains from the newest checkpoint (or `initial`) to loop.total_steps.

  `step_fn` returns metrics holding a boolean "finite"; a non-finite step
  leaves the state unchanged inside the step. Here it stops the run (the
  last checkpoint stays the newest) unless loop.skip_nonfinite.
  `on_log(step, state)` adds metrics (kNN, RankMe, ...) at log steps;
  `on_metrics(step, scalars)` then sees them (the collapse watch).
  `sharding` places the state as `step_fn` expects it (None: replicated on
  `mesh`; pretraining's is parallel.state_sharding).
  Pending checkpoint writes finish whatever ends the run (an error included),
  so the newest checkpoint on disk is always a complete one; but when another
  process of the job is lost (HostLost), nothing more is written: a pending
  save stays a temporary directory, which orbax removes on the rerun.
  """
  if sharding is None:
    sharding = parallel.replicated_sharding(mesh)
  mngr, state = restore_or_init(loop, initial, sharding)
  start = int(jax.device_get(state.step))
  writer = writers.MetricsWriter(loop.phase_dir, enabled=parallel.is_chief(),
                                 tensorboard=loop.tensorboard)
  writer.drop_after(start)
  if start >= loop.total_steps:
    writers.console(f"{loop.phase}: finished already (step {start})")
    return state
  # The preemption notice is caught from here on: one arriving before the
  # first step still ends in a checkpoint and a clean exit.
  with _SigtermFlag() as sigterm:
    if start:
      writers.console(f"{loop.phase}: resuming from step {start}")
    lost = None
    try:
      return _train(loop, mngr, state, start, step_fn, batches, mesh, on_log,
                    on_metrics, writer, sigterm)
    except Exception as error:  # pylint: disable=broad-except
      if not parallel.lost_peer(error):
        raise
      lost = error
    finally:
      # Not after a lost process: a pending save's barrier would wait for it
      # until JAX's heartbeat timeout aborts this process.
      if lost is None:
        mngr.wait_until_finished()
        writer.close()
  raise _host_lost(loop, mngr, lost)


def _host_lost(loop: LoopConfig, mngr, error: Exception) -> HostLost:
  step = checkpointing.newest_on_disk(mngr)
  resumes = ("no complete checkpoint yet, the phase starts again"
             if step is None else f"its last complete checkpoint is step {step}")
  return HostLost(f"{loop.phase}: {parallel.lost_peer_text(error)}; {resumes}")


def _check_finite(loop: LoopConfig, mngr, step: int,
                  metrics: dict[str, np.ndarray]) -> bool:
  """True when the step was finite; a non-finite one stops the run unless
  loop.skip_nonfinite (then it is logged and the caller counts it)."""
  if metrics.pop("finite"):
    return True
  bad = _nonfinite_names(metrics)
  if not loop.skip_nonfinite:
    raise NonFiniteError(
        f"{loop.phase}: non-finite {', '.join(bad) or 'gradients'} at "
        f"step {step}; stopped, the newest checkpoint ({mngr.latest_step()}"
        ") is intact. Lower the learning rate or set "
        f"--config.{loop.phase}.skip_nonfinite=True")
  logging.warning("%s: step %d skipped, non-finite %s", loop.phase, step, bad)
  return False


def _time_to_save(last_save: float, loop: LoopConfig) -> bool:
  """Whether checkpoint_every_seconds has passed, asked at log steps. Every
  process must save the same steps (orbax's multi-host save is collective),
  so process 0's clock decides for all."""
  if loop.checkpoint_every_seconds == math.inf:
    return False
  due = time.monotonic() - last_save > loop.checkpoint_every_seconds
  if jax.process_count() == 1:
    return due
  return bool(multihost_utils.broadcast_one_to_all(np.int32(due)))


def _train(loop, mngr, state, start, step_fn, batches, mesh, on_log,
           on_metrics, writer, sigterm):
  progress = writers.Progress(loop.phase, loop.total_steps, start,
                              loop.examples_per_step)
  skipped = 0
  last_save = time.monotonic()
  # A plain step's metrics are read after the next step is dispatched, so
  # the device never idles while the host reads them; log and checkpoint
  # steps are read at once (they need that step's state, and a checkpoint
  # must follow only checked steps).
  pending = None
  stream = batches(start)
  for step in range(start + 1, loop.total_steps + 1):
    state, metrics = step_fn(state, parallel.global_batch(next(stream), mesh))
    if step == start + 1:
      # The compiler's freed heap, before the step's buffers grow into it.
      host_memory.release_freed_memory()
    if pending is not None:
      skipped += not _check_finite(loop, mngr, pending[0],
                                   parallel.to_host(pending[1]))
      pending = None
    due_log = step % loop.log_every_steps == 0 or step == loop.total_steps
    due_save = (step % loop.checkpoint_every_steps == 0
                or step == loop.total_steps
                or due_log and _time_to_save(last_save, loop))
    if not (due_log or due_save or sigterm.raised):
      pending = (step, metrics)
      continue
    metrics = parallel.to_host(metrics)
    skipped += not _check_finite(loop, mngr, step, metrics)
    if due_log:
      scalars = dict(metrics)
      scalars["skipped_steps"] = skipped
      if on_log is not None:
        scalars.update(on_log(step, state))
      scalars["examples_per_second"] = progress.report(
          step, {k: scalars[k] for k in ("loss",) if k in scalars})
      writer.write_scalars(step, scalars)
      if on_metrics is not None:
        on_metrics(step, scalars)
    if due_save or sigterm.raised:
      checkpointing.save(mngr, step, state)
      last_save = time.monotonic()
    if sigterm.raised:
      mngr.wait_until_finished()
      raise Preempted(f"{loop.phase}: SIGTERM at step {step}; checkpoint "
                      "saved, rerun the same command to resume")
  return state
