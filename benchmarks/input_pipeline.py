"""Two-view input pipeline throughput on fake 96x96 data (no network).

  python benchmarks/input_pipeline.py [--num_images 2000] [--batch 256]

Runs datasets.pretrain_batches, the code training uses, on a fake uint8
source of the given size, for both recipes, and prints two-view images/s and
images/s per CPU core. Numbers go to BENCHMARKS.md.
"""

import argparse
import os
import time
from unittest import mock

import numpy as np

from vicreg_haiku import datasets
from vicreg_haiku import defaults


def measure(recipe: str, images: np.ndarray, batch: int, warmup: int,
            batches: int) -> float:
  config = defaults.base_config()
  config.dataset.name = "stl10"
  config.dataset.image_size = images.shape[1]
  config.pretrain.batch_size = batch
  config.pretrain.augmentation = recipe
  labels = np.zeros(len(images), np.int32)
  # Stand in for the decoded tfds shard: everything after it is real.
  with mock.patch.object(datasets, "_builder"), \
       mock.patch.object(datasets, "_read_tfds",
                         return_value=(images, labels)), \
       mock.patch.object(datasets, "num_examples", return_value=len(images)):
    datasets._source.cache_clear()  # pylint: disable=protected-access
    it = datasets.pretrain_batches(config, process_index=0, process_count=1)
    for _ in range(warmup):
      next(it)
    start = time.perf_counter()
    for _ in range(batches):
      next(it)
    return batches * batch / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_images", type=int, default=2000)
  parser.add_argument("--size", type=int, default=96)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--batches", type=int, default=30)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.num_images, args.size, args.size, 3),
                        dtype=np.uint8)
  cores = os.cpu_count()
  for recipe in ("vicreg", "seed"):
    rate = measure(recipe, images, args.batch, args.warmup, args.batches)
    print(f"RESULT {recipe}: {rate:.0f} two-view images/s on {cores} cores "
          f"= {rate / cores:.0f} per core ({2 * rate:.0f} views/s)", flush=True)


if __name__ == "__main__":
  main()
