"""CPU time per image of an input pipeline, by difference of two runs.

  python benchmarks/cpu_per_image.py --batch 64 --batches 2 6 -- \
      python benchmarks/input_pipeline.py --folder /tmp/photos --size 224
  python benchmarks/cpu_per_image.py --batch 64 --batches 2 6 -- \
      python ../shared/peers/torchvision_imagefolder.py --root /tmp/photos/train

Runs the command twice, with `--batch B --batches N` appended for each N
given, and prints the CPU seconds (user + system, of the process and every
child: tf.data's threads, DataLoader's workers) the extra batches cost per
two-view image, and the images/s per core that makes. Start-up, imports and
compilation cost both runs alike and cancel out, so this compares pipelines
fairly on a machine shared with other work, where wall-clock rates do not.
"""

import argparse
import resource
import subprocess
import sys


def cpu_seconds(command: list[str]) -> float:
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  result = subprocess.run(command, capture_output=True, text=True)
  if result.returncode:
    sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--batches", type=int, nargs=2, default=(2, 6))
  parser.add_argument("command", nargs=argparse.REMAINDER)
  args = parser.parse_args()
  command = [c for c in args.command if c != "--"]
  few, many = sorted(args.batches)
  runs = [cpu_seconds(command + ["--batch", str(args.batch), "--batches",
                                 str(n)]) for n in (few, many)]
  per_image = (runs[1] - runs[0]) / ((many - few) * args.batch)
  print(f"RESULT {' '.join(command)}: {1e3 * per_image:.1f} ms of CPU per "
        f"two-view image = {1 / per_image:.0f} images/s per core "
        f"(runs of {few} and {many} batches of {args.batch}: "
        f"{runs[0]:.1f} and {runs[1]:.1f} CPU s)")


if __name__ == "__main__":
  main()
