"""How often an encoder's nearest images share the query's class.

  python benchmarks/neighbour_agreement.py --workdir DIR [--split SPLIT] \
      [--k 8]

For every image of SPLIT (default: the run's test_split) of a labelled
dataset, its k nearest other images by cosine similarity of the encoder's
features (what neighbours.png shows for 8 queries), and the fraction of them
of the query's class; for the workdir's pretrained encoder and the same
network at random init. Numbers go to BENCHMARKS.md.
"""

import argparse
import time

import numpy as np

from vicreg_haiku import launch_env


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--split", default=None)
  parser.add_argument("--k", type=int, default=8)
  args = parser.parse_args()
  launch_env.prepare()
  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import features
  from vicreg_haiku.evaluation import pretrained
  from vicreg_haiku.evaluation import probing
  from vicreg_haiku.evaluation import retrieval
  from vicreg_haiku.models import precision
  from vicreg_haiku.training import parallel
  config = pretrained.read_config(args.workdir)
  precision.set_compute_dtype(config.precision)
  split = args.split or config.dataset.test_split
  mesh = parallel.make_mesh()
  params, net_state, step = pretrained.restore_encoder(config, args.workdir)
  encoder = features.encoder_features(config)
  for name, weights in (
      (f"VICReg (step {step})", (params, net_state)),
      ("random init", probing.random_init_encoder(config, mesh))):
    start = time.perf_counter()
    x, labels = features.extract(config, encoder(*weights), split, mesh)
    found, _ = retrieval.nearest(x, x, args.k, exclude=np.arange(len(x)))
    agree = (labels[found] == labels[:, None]).mean()
    chance = np.sum((np.bincount(labels) / len(labels)) ** 2)
    print(f"{name}: {100 * agree:.1f}% of the {args.k} nearest of each of "
          f"{len(x)} images of {split} share its class (chance "
          f"{100 * chance:.1f}%); {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  main()
