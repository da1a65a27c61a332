"""Images/s, FLOPs and memory of the pretraining step.

  python benchmarks/train_step.py --batch 64 --size 96 --precision float32 \
      [--augment_on host|device] [--encoder resnet50] [--expander 8192] \
      [--loss vicreg|sigreg] [--local_views 6 [--local_size 14]] \
      [--loop_steps 40] [--json FILE]

The default model is the PyTorch reference's (../shared/peers/
torch_vicreg_step.py): ResNet-18 (ImageNet stem) + 512-2048-2048-2048
expander, two views, LARS (--encoder vit_*: timm's ViT, patch --patch_size,
and AdamW, as training chooses). The step is pretrain_step.jit_step, the one
training runs. Prints the median step time over --steps after --warmup steps,
the compile time, the step's FLOPs from XLA's cost analysis, achieved
GFLOP/s, the fraction of this machine's matmul peak in the compute dtype
measured in the same run, the peak device memory (where the backend reports
it), XLA's own memory plan and the peak RSS of this process.

TensorFlow is never imported (the output says whether it was), in either
mode: with --augment_on device the batch is data/example_batches.py's (the
photometric parameters drawn in NumPy with the tf.data pipeline's
distributions, the crop boxes' Pillow coefficients too), and the step turns
them and 375 x 500 images on a --canvas into views, as in training; the CROPS line
gives the crop + resize's own time and FLOPs beside the step's. So the process
holds the step alone, as the PyTorch reference's does (a training run adds
~0.5 GiB for tf.data), and it runs on accelerator images without TF.

--loop_steps N then runs N steps of the training loop itself (loop.run, the
same compiled step, metrics.jsonl, orbax checkpoints to a temporary
directory) on a fixed in-memory batch, fed from host memory at every step as
an input pipeline's would be: images/s between log steps without a
checkpoint, against the step alone, and the time a checkpoint adds.

XLA flags: the project's defaults (vicreg_haiku/xla_flags.py, as launch.py
sets them) unless XLA_FLAGS already names them; the run prints XLA_FLAGS.
"""

import argparse
import itertools
import json
import os
import resource
import sys
import tempfile
import time

from vicreg_haiku import xla_flags

xla_flags.set_defaults()  # before JAX starts its backend

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp
import numpy as np

from vicreg_haiku.data import device_crops
from vicreg_haiku.data import example_batches
from vicreg_haiku.models import precision
from vicreg_haiku.models import transforms
from vicreg_haiku.training import host_memory
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import defaults

# The exit status of a run that did not fit in device memory.
OUT_OF_MEMORY = 3


def matmul_peak_gflops(n: int, dtype, repeats: int = 5,
                       calls: int = 3) -> float:
  """The best rate of `calls` back-to-back n x n products, random data
  (zeros run faster on some chips than real operands)."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()

  def run():
    for _ in range(calls - 1):
      matmul(a)
    matmul(a).block_until_ready()

  best = min(_timed(run) for _ in range(repeats))
  return 2 * n**3 * calls / best / 1e9


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def time_crops(batch, warmup: int, steps: int) -> dict:
  """The device half's crop + resize alone (device_crops.view_crops) on the
  step's batch: its time and FLOPs, to set beside the step's."""
  crops = jax.jit(device_crops.view_crops)
  compiled = crops.lower(batch).compile()
  for _ in range(warmup):
    compiled(batch).block_until_ready()
  times = [_timed(lambda: compiled(batch).block_until_ready())
           for _ in range(steps)]
  return {"crop_s": float(np.median(times)),
          "crop_flops": compiled.cost_analysis().get("flops", float("nan"))}


def benchmark_config(args):
  config = defaults.base_config()
  config.model.encoder = args.encoder
  config.model.stem = args.stem
  config.model.width = args.width
  config.model.patch_size = args.patch_size
  config.model.expander_dims = (args.expander,) * 3
  config.dataset.image_size = args.size
  config.precision = args.precision
  config.pretrain.batch_size = args.batch
  config.loss.name = args.loss
  config.pretrain.local_views = args.local_views
  config.pretrain.local_size = args.local_size
  config.pretrain.augment_on = args.augment_on
  config.pretrain.canvas_size = args.canvas
  return config


def peak_device_bytes() -> int | None:
  """The most device memory this process held at once, over its devices;
  None where the backend keeps no count (XLA:CPU)."""
  peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use")
           for d in jax.local_devices()]
  return None if None in peaks else max(peaks)


def _is_out_of_memory(error: Exception) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text


def time_steps(compiled, state, batch, warmup: int, steps: int):
  """(median seconds per step, state, last metrics); each step waited for,
  as the PyTorch reference's .item() does."""
  for _ in range(warmup):
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return float(np.median(times)), state, metrics


def time_loop(config, compiled, initial, local_batch, mesh, steps: int,
              log_every: int) -> dict[str, float]:
  """loop.run over `steps` steps from `initial`, logging every `log_every`
  and checkpointing every 2 * log_every steps (to a temporary directory).

  Returns images/s over the log intervals without a checkpoint and the
  seconds an interval with one took longer. Every step's batch is copied
  from host memory, as an input pipeline's is; the monitors pretraining adds
  at log steps (RankMe, kNN: forward passes over the eval split) are not run.
  """
  # Imported here: orbax adds ~50 MiB to the peak RSS of a process that
  # otherwise holds the step alone, as the PyTorch reference's does.
  from vicreg_haiku.training import loop  # pylint: disable=g-import-not-at-top
  logged = {}

  def on_metrics(step, scalars):
    del scalars
    logged[step] = time.perf_counter()

  with tempfile.TemporaryDirectory() as phase_dir:
    loop_config = loop.LoopConfig(
        phase="pretrain", phase_dir=phase_dir, total_steps=steps,
        examples_per_step=config.pretrain.batch_size,
        log_every_steps=log_every, checkpoint_every_steps=2 * log_every,
        tensorboard=False)
    loop.run(loop_config, initial, compiled,
             lambda start: itertools.repeat(local_batch), mesh,
             on_metrics=on_metrics,
             sharding=parallel.state_sharding(initial, mesh))
  marks = sorted(logged)
  # A checkpoint is written after its step's metrics are logged: it falls
  # in the interval that starts there.
  clean, saved = [], []
  for begin, end in zip(marks, marks[1:]):
    seconds = (logged[end] - logged[begin]) / (end - begin)
    (saved if begin % (2 * log_every) == 0 else clean).append(seconds)
  step_s = float(np.median(clean)) if clean else float("nan")
  stall = (float(np.mean(saved)) - step_s) * log_every if saved else float(
      "nan")
  return {"loop_images_per_s": config.pretrain.batch_size / step_s,
          "loop_step_s": step_s, "checkpoint_stall_s": stall}


def measure(args) -> dict:
  config = benchmark_config(args)
  precision.set_compute_dtype(args.precision)
  mesh = parallel.make_mesh()
  model = transforms.pretrain_model(config)
  # The schedule's length does not change the step's cost.
  optimizer, schedule = pretrain_step.make_optimizer(config,
                                                     steps_per_epoch=100)
  state = pretrain_step.init_state(config, model, optimizer)
  state = jax.device_put(state, parallel.state_sharding(state, mesh))
  initial = jax.device_get(state) if args.loop_steps else None
  local_batch = example_batches.pretrain_batch(config, args.batch)
  batch = parallel.global_batch(local_batch, mesh)
  step = pretrain_step.jit_step(config, model, optimizer, schedule, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  flops = compiled.cost_analysis().get("flops", float("nan"))
  plan = compiled.memory_analysis()  # None where the backend has none
  host_memory.release_freed_memory()  # as the training loop does
  step_s, state, metrics = time_steps(compiled, state, batch, args.warmup,
                                      args.steps)
  result = dict(
      encoder=args.encoder, width=args.width, size=args.size,
      expander=args.expander, batch=args.batch, loss_name=args.loss,
      precision=args.precision,
      augment_on=args.augment_on, images_per_s=args.batch / step_s,
      step_s=step_s, compile_s=compile_s, flops=flops,
      loss=float(metrics["loss"]), peak_device_bytes=peak_device_bytes(),
      xla_argument_bytes=plan and plan.argument_size_in_bytes,
      xla_temp_bytes=plan and plan.temp_size_in_bytes)
  if args.augment_on == "device":
    result.update(time_crops(batch, args.warmup, args.steps))
  del state, batch
  dtype = jnp.dtype(args.precision)
  n = args.matmul_size or (2048 if jax.default_backend() == "cpu" else 8192)
  result.update(matmul_n=n, matmul_peak_gflops=matmul_peak_gflops(n, dtype))
  if args.loop_steps:
    result.update(time_loop(config, compiled, initial, local_batch, mesh,
                            args.loop_steps, args.log_every))
  return result


def _gib(size: int | None) -> str:
  return "n/a" if size is None else f"{size / 2**30:.2f} GiB"


def report(args, result: dict) -> None:
  gflops = result["flops"] / result["step_s"] / 1e9
  peak = result["matmul_peak_gflops"]
  device_peak = _gib(result["peak_device_bytes"])
  plan = (None if result["xla_temp_bytes"] is None
          else result["xla_argument_bytes"] + result["xla_temp_bytes"])
  plan = _gib(plan)
  print(f"jax {jax.__version__} devices={jax.device_count()} "
        f"({jax.devices()[0].device_kind}) encoder={args.encoder} "
        f"width={args.width} expander={args.expander} batch={args.batch} "
        f"loss_name={args.loss} local_views={args.local_views} "
        f"size={args.size} precision={args.precision} "
        f"augment_on={args.augment_on} loss={result['loss']:.4f} "
        f"XLA_FLAGS={os.environ['XLA_FLAGS']!r} "
        f"tensorflow_imported={result['tensorflow_imported']}")
  print(f"RESULT images/s={result['images_per_s']:.1f} "
        f"step={result['step_s']:.4f}s compile={result['compile_s']:.1f}s "
        f"GFLOP/step={result['flops'] / 1e9:.1f} achieved={gflops:.0f} "
        f"GFLOP/s matmul_peak={peak:.0f} GFLOP/s ({args.precision}, "
        f"n={result['matmul_n']}; {100 * gflops / peak:.0f}% of peak) "
        f"peak_device={device_peak} "
        f"xla_args+temps={plan} "
        f"peak_rss={result['peak_rss_gib']:.2f} GiB")
  if "crop_s" in result:
    print(f"CROPS canvas={args.canvas} crop+resize of both views: "
          f"{result['crop_s']:.4f}s a batch "
          f"({100 * result['crop_s'] / result['step_s']:.1f}% of the step's "
          f"time), GFLOP={result['crop_flops'] / 1e9:.2f} "
          f"({100 * result['crop_flops'] / result['flops']:.1f}% of the "
          "step's)")
  if "loop_images_per_s" in result:
    print(f"LOOP images/s={result['loop_images_per_s']:.1f} "
          f"(step alone {result['images_per_s']:.1f}) "
          f"checkpoint_stall={result['checkpoint_stall_s']:.3f}s")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--encoder", default="resnet18",
                      choices=["resnet18", "resnet50", "vit_tiny",
                               "vit_small", "vit_base"])
  parser.add_argument("--patch_size", type=int, default=16, help="ViTs")
  parser.add_argument("--width", type=int, default=64)
  parser.add_argument("--expander", type=int, default=2048,
                      help="width of the expander's three layers")
  parser.add_argument("--batch", type=int, default=64, help="global batch")
  parser.add_argument("--loss", default="vicreg", choices=("vicreg", "sigreg"),
                      help="config.loss.name (sigreg: LeJEPA's defaults)")
  parser.add_argument("--local_views", type=int, default=0,
                      help="config.pretrain.local_views (multi-crop)")
  parser.add_argument("--local_size", type=int,
                      help="their side (None: view_sizes.local_size's)")
  parser.add_argument("--stem", default="imagenet", choices=("imagenet",
                                                             "cifar"))
  parser.add_argument("--batch_per_device", type=int,
                      help="instead of --batch: this many per device")
  parser.add_argument("--size", type=int, default=96)
  parser.add_argument("--precision", default="float32",
                      choices=precision.PRECISIONS)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--augment_on", default="host",
                      choices=["host", "device"],
                      help="device: the step also crops, resizes and "
                      "colours (decoded images on a canvas in)")
  parser.add_argument("--canvas", type=int, default=500,
                      help="device: the canvas side; the images are 375 x "
                      "500 (a photo's decoded JPEG size)")
  parser.add_argument("--matmul_size", type=int, default=0,
                      help="n of the peak's n x n matmul (0: 2048 on CPU, "
                      "8192 on accelerators)")
  parser.add_argument("--loop_steps", type=int, default=0,
                      help="then run the training loop for this many steps")
  parser.add_argument("--log_every", type=int, default=10,
                      help="the loop's log interval (checkpoints: twice it)")
  parser.add_argument("--json", help="also write the numbers to this file")
  args = parser.parse_args()
  if args.batch_per_device:
    args.batch = args.batch_per_device * jax.device_count()
  try:
    result = measure(args)
  except jax.errors.JaxRuntimeError as error:
    if not _is_out_of_memory(error):
      raise
    print(f"OUT_OF_MEMORY batch={args.batch}: {str(error).splitlines()[0]}")
    if args.json:
      with open(args.json, "w") as f:
        json.dump({"out_of_memory": True, "batch": args.batch}, f)
    sys.exit(OUT_OF_MEMORY)
  result.update(
      tensorflow_imported="tensorflow" in sys.modules,
      peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
      devices=jax.device_count(), device_kind=jax.devices()[0].device_kind,
      jax_version=jax.__version__,
      backend=jax.default_backend())
  report(args, result)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
