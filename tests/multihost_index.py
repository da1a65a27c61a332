"""Checking a folder's data as one process of a job (tests/test_multihost.py).

argv: OUT.json ROOT SPLIT. Runs the runner's up-front data check for a
pretraining run on config.dataset.folder=ROOT, pretrain_split=SPLIT, and
writes {"checked": files this process decoded, "error": message or None}.
"""

import json
import os
import sys

from vicreg_haiku import runner
from vicreg_haiku.data import folder_index
from vicreg_haiku.data import shards
from vicreg_haiku.training import parallel
from vicreg_haiku.utils import defaults


def main(out_path: str, root: str, split: str) -> None:
  parallel.maybe_initialize_distributed("JAX_COORDINATOR_ADDRESS" in os.environ)
  checked = []
  check_shapes = folder_index._check_shapes  # pylint: disable=protected-access

  def counting(paths, description):
    checked.append(len(paths))
    return check_shapes(paths, description)

  folder_index._check_shapes = counting  # pylint: disable=protected-access
  config = defaults.base_config()
  config.dataset.update(name="folder", folder=root, pretrain_split=split,
                        train_split="train", test_split="train")
  error = None
  try:
    runner._check_data(config, ("pretrain",))  # pylint: disable=protected-access
  except shards.DataError as failure:
    error = str(failure)
  with open(out_path, "w") as f:
    json.dump({"checked": sum(checked), "error": error}, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
