"""Images/s, FLOPs and memory of the VICReg pretraining step.

  python benchmarks/train_step.py --batch 64 --size 96 --precision float32

The model is the PyTorch reference's (../shared/peers/torch_vicreg_step.py):
ResNet-18 (ImageNet stem) + 512-2048-2048-2048 expander, two views, LARS.
Prints the median step time over --steps after --warmup steps, the step's
FLOPs from XLA's cost analysis, achieved GFLOP/s, the fraction of this
machine's float32 matmul peak measured in the same run, and peak RSS.
"""

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from vicreg_haiku import defaults
from vicreg_haiku import models
from vicreg_haiku import parallel
from vicreg_haiku import precision
from vicreg_haiku import pretraining


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
  a = jnp.ones((n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = min(_timed(lambda: matmul(a).block_until_ready())
             for _ in range(repeats))
  return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--size", type=int, default=96)
  parser.add_argument("--precision", default="float32")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--steps", type=int, default=8)
  args = parser.parse_args()

  config = defaults.base_config()
  config.model.stem = "imagenet"
  config.model.expander_dims = (2048, 2048, 2048)
  config.dataset.image_size = args.size
  config.precision = args.precision
  precision.set_compute_dtype(args.precision)
  mesh = parallel.make_mesh()
  model = models.pretrain_model(config)
  # The schedule's length comes from the (embedded) digits split: any serves.
  optimizer, schedule = pretraining.make_optimizer(config)
  state = parallel.replicate(
      pretraining.init_state(config, model, optimizer), mesh)
  rng = np.random.default_rng(0)
  batch = parallel.global_batch(
      {k: rng.normal(size=(args.batch, args.size, args.size, 3)).astype(
          np.float32) for k in ("view_a", "view_b")}, mesh)
  step = jax.jit(pretraining.make_step(config, model, optimizer, schedule),
                 donate_argnums=0)
  compiled = step.lower(state, batch).compile()
  flops = compiled.cost_analysis().get("flops", float("nan"))
  for _ in range(args.warmup):
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  median = float(np.median(times))
  peak = matmul_peak_gflops()
  achieved = flops / median / 1e9
  rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(f"jax {jax.__version__} devices={jax.device_count()} "
        f"({jax.devices()[0].device_kind}) batch={args.batch} size={args.size} "
        f"precision={args.precision} loss={float(metrics['loss']):.4f}")
  print(f"RESULT images/s={args.batch / median:.1f} step={median:.3f}s "
        f"GFLOP/step={flops / 1e9:.1f} achieved={achieved:.0f} GFLOP/s "
        f"matmul_peak={peak:.0f} GFLOP/s ({100 * achieved / peak:.0f}% of peak) "
        f"peak_rss={rss_gib:.2f} GiB")


if __name__ == "__main__":
  main()
