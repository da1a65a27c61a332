"""Peak host memory and speed of python -m vicreg_haiku.embed at two sizes.

  python benchmarks/embed_memory.py --workdir DIR --root /tmp/embed_bench \
      [--images 100] [--scale 10]

Writes two folders of JPEGs of mixed sizes (crops of scikit-learn's sample
photos, so the pipeline streams them from disk rather than holding them
decoded), IMAGES and SCALE x IMAGES files, embeds each with DIR's encoder
(--config.dataset.folder), and prints each run's rows/s and peak RSS: the
memory embed holds is one batch, so the peak should not grow with the rows.
The test suite embeds 10 images; the default here is 100 and 1,000.
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

_SIZES = ((40, 56), (64, 48), (50, 75), (37, 37))


def _write_folder(root: str, count: int) -> None:
  if os.path.isdir(root) and len(os.listdir(root)) >= count:
    return
  os.makedirs(root, exist_ok=True)
  rng = np.random.default_rng(0)
  photos = load_sample_images().images
  for i in range(count):
    photo = photos[i % 2]
    top, left = rng.integers(0, 200), rng.integers(0, 300)
    height, width = _SIZES[i % len(_SIZES)]
    crop = Image.fromarray(photo[top:top + 200, left:left + 300])
    crop.resize((width, height)).save(os.path.join(root, f"{i:07d}.jpg"),
                                      quality=90)


def _embed(workdir: str, folder: str, output: str) -> tuple[float, float]:
  """(seconds, peak RSS in MiB) of one embed process."""
  start = time.perf_counter()
  subprocess.run([sys.executable, "-m", "vicreg_haiku.embed",
                  f"--workdir={workdir}", f"--output={output}", "--split=.",
                  f"--config.dataset.folder={folder}",
                  f"--config.dataset.index_dir={output}_index"], check=True,
                 stdout=subprocess.DEVNULL)
  seconds = time.perf_counter() - start
  # ru_maxrss of the children waited for so far: the largest, in KiB.
  return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--root", required=True)
  parser.add_argument("--images", type=int, default=100)
  parser.add_argument("--scale", type=int, default=10)
  args = parser.parse_args()
  for count in (args.images, args.images * args.scale):
    folder = os.path.join(args.root, f"images_{count}")
    _write_folder(folder, count)
    output = os.path.join(args.root, f"embedded_{count}_{time.time_ns()}")
    seconds, peak = _embed(args.workdir, folder, output)
    print(f"{count} images: {seconds:.1f} s in all (start-up, indexing and "
          f"compiling included), {count / seconds:.1f} rows/s, peak RSS of "
          f"the largest embed so far {peak:.0f} MiB")


if __name__ == "__main__":
  main()
