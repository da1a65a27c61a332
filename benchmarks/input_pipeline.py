"""Two-view input pipeline throughput on fake 96x96 data (no network).

  python benchmarks/input_pipeline.py [--num_images 2000] [--batch 256]

Runs datasets.pretrain_batches, the code training uses, on a fake uint8
source of the given size, for both recipes and both places of the
photometric half (augment_on "host": the whole view in tf.data; "device":
tf.data stops after the crop), and prints two-view images/s and images/s per
CPU core. For "device" it also times device_augmentations.two_views, the
photometric half the training step runs, on JAX's default device. Numbers go
to BENCHMARKS.md.
"""

import argparse
import functools
import os
import time
from unittest import mock

import jax
import numpy as np

from vicreg_haiku import datasets
from vicreg_haiku import defaults
from vicreg_haiku import pretrain_step


def measure(recipe: str, augment_on: str, images: np.ndarray, batch: int,
            warmup: int, batches: int) -> tuple[float, dict]:
  config = defaults.base_config()
  config.dataset.name = "stl10"
  config.dataset.image_size = images.shape[1]
  config.pretrain.batch_size = batch
  config.pretrain.augmentation = recipe
  config.pretrain.augment_on = augment_on
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
      last = next(it)
    return batches * batch / (time.perf_counter() - start), config, last


def measure_device_half(config, batch: dict, repeats: int) -> float:
  """Two-view images/s of the photometric half inside a jitted function."""
  views = jax.jit(functools.partial(pretrain_step.two_views, config))
  batch = jax.device_put(batch)
  jax.block_until_ready(views(batch))
  start = time.perf_counter()
  for _ in range(repeats):
    out = views(batch)
  jax.block_until_ready(out)
  return repeats * len(batch["crops"]) / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_images", type=int, default=2000)
  parser.add_argument("--size", type=int, default=96)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--batches", type=int, default=30)
  parser.add_argument("--augment_on", nargs="+", default=["host", "device"])
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.num_images, args.size, args.size, 3),
                        dtype=np.uint8)
  cores = os.cpu_count()
  for augment_on in args.augment_on:
    for recipe in ("vicreg", "seed"):
      rate, config, last = measure(recipe, augment_on, images, args.batch,
                                   args.warmup, args.batches)
      print(f"RESULT {recipe} augment_on={augment_on}: tf.data {rate:.0f} "
            f"two-view images/s on {cores} cores = {rate / cores:.0f} per core",
            flush=True)
      if augment_on == "device":
        rate = measure_device_half(config, last, args.batches)
        print(f"RESULT {recipe} photometric half on {jax.devices()[0]}: "
              f"{rate:.0f} two-view images/s", flush=True)


if __name__ == "__main__":
  main()
