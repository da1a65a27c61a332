"""Orbax checkpoints of a phase's train state, resumed automatically.

Orbax writes each step to a temporary directory and renames it when complete,
so a checkpoint cut short by a preemption is never listed as a step. A newest
checkpoint that still fails to restore (a corrupted file) is reported and the
one before it is used.
"""

from typing import Any

import orbax.checkpoint as ocp
from absl import logging


class CheckpointError(RuntimeError):
  pass


def manager(directory: str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
  # Old checkpoints are deleted only after the newer one is finalised.
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(directory, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any) -> None:
  mngr.save(step, args=ocp.args.StandardSave(state), force=True)


def restore_latest(mngr: ocp.CheckpointManager, target: Any) -> Any | None:
  """The newest checkpoint that restores, shaped like `target`; None if none.

  `target` gives structure, shapes, dtypes and shardings (arrays or
  jax.ShapeDtypeStruct).
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  for step in steps:
    try:
      return mngr.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as error:  # pylint: disable=broad-except
      logging.warning("checkpoint %s/%d does not restore (%s: %s); "
                      "trying the previous one", mngr.directory, step,
                      type(error).__name__, error)
  if steps:
    raise CheckpointError(
        f"no checkpoint in {mngr.directory} restores (steps {steps}); remove "
        "the directory to start the phase again")
  return None
