"""Orbax checkpoints of a phase's train state, resumed automatically.

Orbax writes each step to a temporary directory (<step>.orbax-checkpoint-tmp-*)
and renames it when complete, so a checkpoint cut short by a preemption is
never listed as a step; leftovers of such a cut are removed when a manager is
opened. A newest checkpoint that still fails to restore (a corrupted file) is
reported, and the one before it is used.
"""

import time
from typing import Any

import orbax.checkpoint as ocp
from absl import logging

from vicreg_haiku.training import parallel


class CheckpointError(RuntimeError):
  pass


def manager(directory: str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
  # Old checkpoints are deleted only after the newer one is finalised.
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(directory, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any) -> None:
  mngr.save(step, args=ocp.args.StandardSave(state), force=True)


def newest_on_disk(mngr: ocp.CheckpointManager) -> int | None:
  """The newest step whose checkpoint is complete on disk, read without a
  collective (safe after the job lost a process); mngr.latest_step() would
  also count a save still being written."""
  return max(ocp.utils.checkpoint_steps(mngr.directory), default=None)


def _short(error: Exception, limit: int = 300) -> str:
  text = f"{type(error).__name__}: {error}"
  return text if len(text) <= limit else text[:limit] + " ..."


def _set_aside(mngr: ocp.CheckpointManager, step: int) -> str:
  """Renames a corrupted step so that the run can write that step again."""
  source = mngr.directory / str(step)  # an epath.Path, gs:// included
  target = f"{source}.corrupt-{int(time.time())}"
  if parallel.is_chief():
    source.rename(target)
  return target


def restore_latest(mngr: ocp.CheckpointManager, target: Any, *,
                   set_aside_corrupt: bool = False) -> Any | None:
  """The newest checkpoint that restores, shaped like `target`; None if none.

  `target` gives structure, shapes, dtypes and shardings (arrays or
  jax.ShapeDtypeStruct). With `set_aside_corrupt`, newer checkpoints that fail
  to restore are renamed to <step>.corrupt-<time> once an older one restored
  (kept for inspection; the training loop then writes those steps again).
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  failed = []
  for step in steps:
    try:
      state = mngr.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as error:  # pylint: disable=broad-except
      failed.append(step)
      logging.warning("checkpoint %s/%d is corrupted and does not restore "
                      "(%s); trying the previous one", mngr.directory, step,
                      _short(error))
      continue
    if failed:
      message = (f"checkpoint(s) {failed} in {mngr.directory} do not restore; "
                 f"resuming from step {step}")
      if set_aside_corrupt:
        moved = [_set_aside(mngr, s) for s in failed]
        mngr.reload()
        message += f" (the corrupted ones moved to {moved})"
      logging.warning("%s", message)
      print(f"warning: {message}", flush=True)
    return state
  if steps:
    raise CheckpointError(
        f"no checkpoint in {mngr.directory} restores (steps {steps} are all "
        "corrupted, see the warnings above); remove the directory to start the "
        "phase again")
  return None
