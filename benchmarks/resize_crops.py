"""CPU time of pil_resize.resize_pil on RandomResizedCrop-like crops.

  python benchmarks/resize_crops.py [--crops 64] [--rounds 3]

Crops of a 500x375 sample photo (scikit-learn's china.jpg, resized), areas
8-100% and ratios 3/4-4/3 as RandomResizedCrop draws them, resized bicubic
to 224 and 96 px in one tf.function with dynamic crop shapes (as in
tf.data); prints CPU ms per crop (process time: the machine may be shared),
each size per round. Run with another checkout on PYTHONPATH to compare
versions; TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 for one core.
"""

import argparse
import time

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images
import tensorflow as tf

from vicreg_haiku.data import pil_resize


def _boxes(count: int, height: int, width: int) -> tf.Tensor:
  rng = np.random.default_rng(0)
  boxes = []
  for _ in range(count):
    area = rng.uniform(0.08, 1) * height * width
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = min(width, int(round(np.sqrt(area * ratio))))
    h = min(height, int(round(np.sqrt(area / ratio))))
    boxes.append((rng.integers(0, height - h + 1),
                  rng.integers(0, width - w + 1), h, w))
  return tf.constant(boxes, tf.int32)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--crops", type=int, default=64)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  photo = Image.fromarray(load_sample_images().images[0]).resize((500, 375))
  image = tf.constant(np.asarray(photo))
  boxes = _boxes(args.crops, 375, 500)
  spec = [tf.TensorSpec([None, None, 3], tf.uint8),
          tf.TensorSpec([4], tf.int32)]
  resize = {}
  for size in (224, 96):
    resize[size] = tf.function(
        lambda x, b, size=size: pil_resize.resize_pil(
            x[b[0]:b[0] + b[2], b[1]:b[1] + b[3]], size, size, "bicubic"),
        input_signature=spec)
    resize[size](image, boxes[0])  # traced outside the timing
  for round_ in range(args.rounds):
    for size in (224, 96):
      start = time.process_time()
      for box in boxes:
        resize[size](image, box)
      ms = (time.process_time() - start) / len(boxes) * 1e3
      print(f"RESULT round={round_} size={size}: {ms:.2f} CPU ms per crop",
            flush=True)


if __name__ == "__main__":
  main()
