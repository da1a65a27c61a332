"""Images/s, FLOPs and memory of the VICReg pretraining step.

  python benchmarks/train_step.py --batch 64 --size 96 --precision float32 \
      [--augment_on host|device]

The model is the PyTorch reference's (../shared/peers/torch_vicreg_step.py):
ResNet-18 (ImageNet stem) + 512-2048-2048-2048 expander, two views, LARS.
Prints the median step time over --steps after --warmup steps, the step's
FLOPs from XLA's cost analysis, achieved GFLOP/s, the fraction of this
machine's float32 matmul peak measured in the same run, and the peak RSS of
this process. With --augment_on host the process holds the step alone, as the
PyTorch reference's does: TensorFlow is never imported (the output says
whether it was); a training run adds its ~0.5 GiB for tf.data.

XLA flags: the project's defaults (vicreg_haiku/xla_flags.py, as launch.py
sets them) unless XLA_FLAGS already names them; the run prints XLA_FLAGS.
"""

import argparse
import os
import resource
import sys
import time

from vicreg_haiku import xla_flags

xla_flags.set_defaults()  # before JAX starts its backend

import jax
import jax.numpy as jnp
import numpy as np

from vicreg_haiku import defaults
from vicreg_haiku import host_memory
from vicreg_haiku import models
from vicreg_haiku import parallel
from vicreg_haiku import precision
from vicreg_haiku import pretrain_step


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


def fake_batch(config, batch: int, size: int) -> dict[str, np.ndarray]:
  """Random inputs of the shapes pretrain_batches yields for augment_on.

  "device" batches carry uint8 crops and the photometric parameters the
  step turns into views; TF (its draws) is imported only then, as it adds
  ~0.5 GiB to the peak RSS measured here.
  """
  rng = np.random.default_rng(0)
  if config.pretrain.augment_on == "host":
    return {k: rng.normal(size=(batch, size, size, 3)).astype(np.float32)
            for k in ("view_a", "view_b")}
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vicreg_haiku import augmentations  # pylint: disable=g-import-not-at-top
  recipe = config.augmentations[config.pretrain.augmentation]
  u = augmentations.draw(tf.constant([0, 0]), [batch, 2])
  params = augmentations.view_params(u, recipe)
  return dict({k: v.numpy() for k, v in params.items()},
              crops=rng.integers(0, 256, (batch, 2, size, size, 3), np.uint8))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--size", type=int, default=96)
  parser.add_argument("--precision", default="float32")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--augment_on", default="host", choices=["host", "device"],
                      help="device: the step also runs the photometric half "
                      "of the augmentation (uint8 crops in)")
  args = parser.parse_args()

  config = defaults.base_config()
  config.model.stem = "imagenet"
  config.model.expander_dims = (2048, 2048, 2048)
  config.dataset.image_size = args.size
  config.precision = args.precision
  precision.set_compute_dtype(args.precision)
  mesh = parallel.make_mesh()
  model = models.pretrain_model(config)
  # The schedule's length does not change the step's cost.
  optimizer, schedule = pretrain_step.make_optimizer(config,
                                                     steps_per_epoch=100)
  state = parallel.replicate(
      pretrain_step.init_state(config, model, optimizer), mesh)
  config.pretrain.augment_on = args.augment_on
  batch = parallel.global_batch(
      fake_batch(config, args.batch, args.size), mesh)
  step = jax.jit(pretrain_step.make_step(config, model, optimizer, schedule),
                 donate_argnums=0)
  compiled = step.lower(state, batch).compile()
  flops = compiled.cost_analysis().get("flops", float("nan"))
  host_memory.release_freed_memory()  # as the training loop does
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
        f"precision={args.precision} augment_on={args.augment_on} "
        f"loss={float(metrics['loss']):.4f} "
        f"XLA_FLAGS={os.environ['XLA_FLAGS']!r} "
        f"tensorflow_imported={'tensorflow' in sys.modules}")
  print(f"RESULT images/s={args.batch / median:.1f} step={median:.3f}s "
        f"GFLOP/step={flops / 1e9:.1f} achieved={achieved:.0f} GFLOP/s "
        f"matmul_peak={peak:.0f} GFLOP/s ({100 * achieved / peak:.0f}% of peak) "
        f"peak_rss={rss_gib:.2f} GiB")


if __name__ == "__main__":
  main()
