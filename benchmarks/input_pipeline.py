"""Two-view input pipeline throughput on a folder of images (no network).

  python benchmarks/photo_folder.py --root /tmp/photos --images 2000
  python benchmarks/input_pipeline.py --folder /tmp/photos --size 224 \
      [--recipe vicreg] [--augment_on host] [--batch 256] [--batches 10]

Runs datasets.pretrain_batches, the code training uses, on config.dataset
name="folder" (ROOT/train), and prints, each on a RESULT line: the time to
list and check the folder (the index; a rerun reuses it), the time from the
pipeline's creation to its first batch, two-view images/s and images/s per
CPU core after --warmup batches, and this process's peak RSS. With
--augment_on device, tf.data stops after the crop (the photometric half runs
in the training step on the accelerator: benchmarks/train_step.py times it).
On a shared machine, benchmarks/cpu_per_image.py around this command gives
the CPU time per image instead. Numbers go to BENCHMARKS.md; the reference is
../shared/peers/torchvision_imagefolder.py on the same files.
"""

import argparse
import os
import resource
import time

from vicreg_haiku.data import datasets
from vicreg_haiku.data import sources
from vicreg_haiku.utils import defaults


def folder_config(args):
  config = defaults.base_config()
  config.dataset.update(name="folder", folder=args.folder,
                        pretrain_split="train", train_split="train",
                        test_split="train", image_size=args.size,
                        in_memory_max_gb=args.in_memory_max_gb)
  if args.index_dir:
    config.dataset.index_dir = args.index_dir
  config.pretrain.batch_size = args.batch
  config.pretrain.augmentation = args.recipe
  config.pretrain.augment_on = args.augment_on
  return config


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--folder", required=True)
  parser.add_argument("--index_dir", default=None)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--batches", type=int, default=10)
  parser.add_argument("--recipe", default="vicreg", choices=["vicreg", "seed"])
  parser.add_argument("--augment_on", default="host",
                      choices=["host", "device"])
  parser.add_argument("--in_memory_max_gb", type=float, default=4.0)
  args = parser.parse_args()
  config = folder_config(args)
  cores = os.cpu_count()

  start = time.perf_counter()
  info = sources.split_info(config, "train")
  index_s = time.perf_counter() - start
  start = time.perf_counter()
  batches = datasets.pretrain_batches(config)
  first = next(batches)
  first_s = time.perf_counter() - start
  for _ in range(args.warmup - 1):
    next(batches)
  start = time.perf_counter()
  for _ in range(args.batches):
    next(batches)
  rate = args.batches * args.batch / (time.perf_counter() - start)
  rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  shard = sources.shard(config, "train", 0, 1)
  print(f"RESULT folder={args.folder} images={info.num_examples} "
        f"kind={'decoded in memory' if shard.decoded else 'streamed'} "
        f"size={args.size} recipe={args.recipe} augment_on={args.augment_on} "
        f"batch={args.batch}: index {index_s:.1f} s, first batch "
        f"{first_s:.1f} s, {rate:.0f} two-view images/s on {cores} cores = "
        f"{rate / cores:.0f} per core, peak RSS {rss_mib:.0f} MiB "
        f"(first batch keys {sorted(first)})", flush=True)


if __name__ == "__main__":
  main()
