"""Runs a vicreg-haiku study.

  python launch.py --config=configs/digits.py --workdir=/tmp/vicreg_digits
  python launch.py --config=configs/stl10.py --workdir=DIR \
      --config.pretrain.batch_size=512 --config.mode=pretrain

Any config field can be overridden with --config.KEY=VALUE; an unknown key,
a value of the wrong type or any other flag mistake is one line on stderr
and exit code 1, before anything is written. Rerunning the same command
resumes. In a multi-process job, the loss of a process is one line on the
others (the command to rerun on every process) and exit code 75. Compiled
programs are kept in --compilation_cache_dir for reruns.
"""

import functools
import os
import shlex
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from vicreg_haiku import command_line

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics and results go (may be gs://).")
_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", None,
    "JAX's persistent compilation cache: reruns load the programs compiled "
    "before. Default: $JAX_COMPILATION_CACHE_DIR, else "
    "~/.cache/vicreg_haiku/jax; '' turns it off.")
flags.mark_flags_as_required(["config", "workdir"])

# sysexits.h's EX_TEMPFAIL: a temporary failure, the same command may succeed.
_HOST_LOST_EXIT = 75


def _exit_host_lost(lost: str) -> None:
  """One line naming the command to rerun, then out at once: Python's
  teardown would run JAX's distributed shutdown, whose barrier waits for the
  lost process until the heartbeat timeout and then aborts the process."""
  command = shlex.join(["python", *sys.argv])
  print(f"error: {lost}; to resume, run on every process (with its JAX_* "
        f"variables as before): {command}", file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(_HOST_LOST_EXIT)


def main(argv):
  del argv  # parse_flags refused any
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # progress lines go to stdout
  # Imported here so that --help and flag errors do not wait for TF and JAX.
  from vicreg_haiku import launch_env  # pylint: disable=g-import-not-at-top
  launch_env.prepare(cache_dir=_CACHE_DIR.value)  # before TF and JAX load
  from vicreg_haiku import config_checks  # pylint: disable=g-import-not-at-top
  from vicreg_haiku import user_errors  # pylint: disable=g-import-not-at-top
  from vicreg_haiku import runner  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.training import parallel  # pylint: disable=g-import-not-at-top
  try:
    # Only the flags say what the user set, as against the config file.
    overridden = config_flags.get_override_values(flags.FLAGS["config"])
    config_checks.refuse_ignored_overrides(_CONFIG.value, overridden)
    runner.run(_CONFIG.value, _WORKDIR.value, overridden)
  except user_errors.Preempted as stop:
    logging.warning("%s", stop)
  except user_errors.HostLost as lost:
    _exit_host_lost(str(lost))
  except user_errors.USER_ERRORS as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
  except Exception as error:  # pylint: disable=broad-except
    # Lost outside a phase's training loop (features, the last kNN): every
    # finished phase is in results.json, the others resume from checkpoints.
    if not parallel.lost_peer(error):
      raise
    _exit_host_lost(f"{parallel.lost_peer_text(error)}; the unfinished "
                    "phases resume from their newest checkpoints")


if __name__ == "__main__":
  app.run(main, flags_parser=functools.partial(command_line.parse_flags,
                                             config_flag=_CONFIG))
