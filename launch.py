"""Runs a vicreg-haiku study.

  python launch.py --config=configs/digits.py --workdir=/tmp/vicreg_digits
  python launch.py --config=configs/stl10.py --workdir=DIR \
      --config.pretrain.batch_size=512 --config.mode=pretrain

Any config field can be overridden with --config.KEY=VALUE; unknown keys and
values of the wrong type are refused. Rerunning the same command resumes.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics and results go (may be gs://).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # progress lines go to stdout
  # Imported here so that --help and flag errors do not wait for TF and JAX.
  from vicreg_haiku import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.set_defaults()  # before JAX starts
  from vicreg_haiku import errors  # pylint: disable=g-import-not-at-top
  from vicreg_haiku import runner  # pylint: disable=g-import-not-at-top
  try:
    runner.run(_CONFIG.value, _WORKDIR.value)
  except errors.Preempted as stop:
    logging.warning("%s", stop)
  except errors.USER_ERRORS as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
