"""Writes a folder of realistic JPEGs for benchmarks (no network).

  python benchmarks/photo_folder.py --root /tmp/photos --images 2000 \
      [--classes 10] [--width 500 --height 375] [--quality 90] [--one_size]

ImageFolder layout ROOT/train/class_XX/*.JPEG. Each file is a random crop of
one of scikit-learn's two sample photographs (china.jpg, flower.jpg)
resized to about ImageNet's typical size (500x375, with some portrait and
other sizes mixed in; --one_size: every image width x height, a folder the
pipeline holds decoded in memory) and saved as a baseline 4:2:0 JPEG,
quality 90, as ImageNet's files mostly are.
"""

import argparse
import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--root", required=True)
  parser.add_argument("--images", type=int, default=2000)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--width", type=int, default=500)
  parser.add_argument("--height", type=int, default=375)
  parser.add_argument("--quality", type=int, default=90)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--one_size", action="store_true")
  args = parser.parse_args()
  rng = np.random.default_rng(args.seed)
  photos = load_sample_images().images
  sizes = [(args.width, args.height), (args.height, args.width),
           (int(args.width * 0.8), int(args.height * 0.8))]
  if args.one_size:
    sizes = sizes[:1] * 3
  for i in range(args.images):
    source = photos[i % len(photos)]
    h = rng.integers(source.shape[0] // 2, source.shape[0] + 1)
    w = rng.integers(source.shape[1] // 2, source.shape[1] + 1)
    top = rng.integers(0, source.shape[0] - h + 1)
    left = rng.integers(0, source.shape[1] - w + 1)
    width, height = sizes[0] if i % 5 else sizes[1 + (i // 5) % 2]
    image = Image.fromarray(source[top:top + h, left:left + w]).resize(
        (width, height), Image.BICUBIC)
    directory = os.path.join(args.root, "train",
                             f"class_{i % args.classes:02d}")
    os.makedirs(directory, exist_ok=True)
    image.save(os.path.join(directory, f"{i:07d}.JPEG"), quality=args.quality)
  print(f"wrote {args.images} JPEGs to {os.path.join(args.root, 'train')}")


if __name__ == "__main__":
  main()
