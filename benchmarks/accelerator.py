"""The pretraining step on one accelerator, against PyTorch on the same chip.

  python benchmarks/accelerator.py [--torch_reference PATH] [--wheels DIR]
      [--out_dir DIR] [--budget_s 450]
  python benchmarks/accelerator.py --tiny    # the same matrix, CPU-sized

Runs benchmarks/train_step.py once per row, each in a process of its own (so
each row's peak device memory is its own): ResNet-18 at 96 px and ResNet-50
at 224 px, each with the official 8192-8192-8192 expander and a 2048 one,
ViT-S/16 at 224 px with both expanders (AdamW, as training picks for it),
with the views fed (augment_on host) and made inside the step from decoded
375 x 500 photos on a 500 px canvas (device: crop, Pillow-exact resize,
flip and colour in the step; the crop + resize's own time and FLOPs in
their column); bfloat16 compute (jmp), float32 loss, batch 256 per chip,
halved until it fits. The 8192 rows also run the training loop around the
step (loop.run, metrics.jsonl, orbax checkpoints) on an in-memory batch.
--torch_reference runs the PyTorch step (torch_vicreg_step.py, ResNet-18 at
96 px, views fed) eagerly and under torch.compile for the ratio. Prints one
Markdown table (and writes it, every row's numbers and every process's
output to --out_dir).

Rows run in order of importance and the run stops starting rows at
--budget_s; a row still running then is stopped. No TensorFlow anywhere:
where dm-haiku, jmp or ml-collections are missing, --wheels names a folder of
their wheels, installed to a temporary directory (BENCHMARKS.md says how
to carry them to a machine without network).
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEP = os.path.join(_ROOT, "benchmarks", "train_step.py")
# What train_step.py imports (module, the package pip knows it by).
_NEEDED = (("jax", "jax"), ("numpy", "numpy"), ("optax", "optax"),
           ("orbax.checkpoint", "orbax-checkpoint"), ("etils", "etils"),
           ("absl", "absl-py"), ("haiku", "dm-haiku"), ("jmp", "jmp"),
           ("ml_collections", "ml-collections"))
_OUT_OF_MEMORY = 3  # train_step.OUT_OF_MEMORY (not imported: it starts JAX)


@dataclasses.dataclass(frozen=True)
class Row:
  encoder: str
  size: int
  expander: int
  augment_on: str
  loop: bool  # also time the training loop around the step

  @property
  def name(self) -> str:
    return (f"{self.encoder} {self.size}px {self.expander} "
            f"{self.augment_on}")


@dataclasses.dataclass(frozen=True)
class TorchRow:
  expander: int
  compiled: bool

  @property
  def name(self) -> str:
    mode = "torch.compile" if self.compiled else "eager"
    return f"PyTorch {mode} resnet18 {self.expander}"


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What one matrix runs at: the real one, or --tiny's for a CPU."""
  width: int
  small_size: int  # ResNet-18's images (STL10's 96 px)
  large_size: int  # ResNet-50's (ImageNet's 224 px)
  expanders: tuple[int, int]  # official, smaller
  batch_per_device: int
  warmup: int
  steps: int
  loop_steps: int
  log_every: int
  matmul_size: int
  torch_device: str
  torch_steps: int
  torch_compile: bool  # inductor's CPU build alone takes minutes on 2 cores


FULL = Sizes(width=64, small_size=96, large_size=224, expanders=(8192, 2048),
             batch_per_device=256, warmup=2, steps=10, loop_steps=40,
             log_every=10, matmul_size=8192, torch_device="cuda",
             torch_steps=20, torch_compile=True)
TINY = Sizes(width=8, small_size=32, large_size=32, expanders=(64, 32),
             batch_per_device=8, warmup=1, steps=3, loop_steps=20,
             log_every=5, matmul_size=512, torch_device="cpu", torch_steps=3,
             torch_compile=False)


def plan(sizes: Sizes, with_torch: bool) -> list:
  """The rows, most important first: the PyTorch pair, the ResNet-50 row
  the peak-fraction goal is about, the ViT-S/16 rows, then the rest."""
  big, small = sizes.expanders
  r18 = lambda e, a, loop=False: Row("resnet18", sizes.small_size, e, a, loop)
  r50 = lambda e, a, loop=False: Row("resnet50", sizes.large_size, e, a, loop)
  vit = lambda e, a: Row("vit_small", sizes.large_size, e, a, False)
  torch = lambda e, c: ([TorchRow(e, c)] if with_torch
                        and (sizes.torch_compile or not c) else [])
  return ([r18(big, "host", True)] + torch(big, False)
          + [r50(big, "device", True)] + torch(big, True)
          + [vit(big, "device"), vit(small, "device")]
          + [r18(big, "device", True), r50(big, "host", True),
             r18(small, "host")] + torch(small, False)
          + [r18(small, "device"), r50(small, "host"), r50(small, "device")])


def install_missing(wheels: str | None) -> str | None:
  """Installs the wheels in `wheels` when a module the step needs is
  missing; returns the directory to put on the path (None: nothing to add).
  """
  missing = [pip for module, pip in _NEEDED if not _importable(module)]
  if not missing:
    return None
  if wheels is None:
    sys.exit(f"error: missing Python packages {', '.join(missing)}: "
             "pip install -e . here, or pass --wheels DIR holding their "
             "wheels (BENCHMARKS.md, 'On an accelerator')")
  names = sorted(os.path.join(wheels, n) for n in os.listdir(wheels)
                 if n.endswith(".whl"))
  if not names:
    sys.exit(f"error: {', '.join(missing)} missing and no wheels in "
             f"--wheels={wheels} (BENCHMARKS.md says how to fetch them)")
  site = tempfile.mkdtemp(prefix="vicreg_wheels_")
  if subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                     "--no-index", "--no-deps", "--no-compile", "--target",
                     site, *names]).returncode:
    sys.exit(f"error: pip could not install the wheels in {wheels} (its "
             "message is above)")
  sys.path.insert(0, site)
  importlib.invalidate_caches()
  still = [pip for module, pip in _NEEDED if not _importable(module)]
  if still:
    sys.exit(f"error: {', '.join(still)} still missing after installing "
             f"the wheels in {wheels}: add theirs (pip download --no-deps)")
  return site


def _importable(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # a missing parent package
    return False


class Runner:
  """Runs each row's process before the deadline, keeping all output."""

  def __init__(self, args, sizes: Sizes, env: dict, log):
    self._args = args
    self._sizes = sizes
    self._env = env
    self._log = log
    self._deadline = time.monotonic() + args.budget_s

  def _run(self, name: str, command: list[str]) -> tuple[int | None, str]:
    """(exit status, output); None when the deadline stopped it."""
    left = self._deadline - time.monotonic()
    if left <= 0:
      return None, ""
    self._log.write(f"\n===== {name}: {' '.join(command)}\n")
    self._log.flush()
    print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
    try:
      done = subprocess.run(command, env=self._env, cwd=_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=left)
    except subprocess.TimeoutExpired as stopped:
      output = stopped.output or ""
      output = output if isinstance(output, str) else output.decode()
      self._log.write(output + "\n(stopped at the time budget)\n")
      return None, output
    self._log.write(done.stdout)
    return done.returncode, done.stdout

  def ours(self, row: Row) -> dict:
    """train_step.py's numbers for the row, the batch halved until it fits."""
    s = self._sizes
    batch = s.batch_per_device
    too_big = []
    while True:
      with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable, _STEP, "--encoder", row.encoder,
            "--width", str(s.width), "--size", str(row.size),
            "--expander", str(row.expander), "--augment_on", row.augment_on,
            "--patch_size", "16", "--precision", "bfloat16",
            "--batch_per_device", str(batch),
            "--warmup", str(s.warmup), "--steps", str(s.steps),
            "--matmul_size", str(s.matmul_size), "--json", out.name]
        if row.loop:
          command += ["--loop_steps", str(s.loop_steps),
                      "--log_every", str(s.log_every)]
        status, output = self._run(f"{row.name} batch/chip {batch}", command)
        if status is None:
          return {"note": "not run: time budget" if not output
                  else "stopped at the time budget", "too_big": too_big}
        if status == _OUT_OF_MEMORY and batch > 1:
          too_big.append(batch)
          batch //= 2
          continue
        if status != 0:
          return {"note": "failed: " + _last_line(output), "too_big": too_big}
        with open(out.name) as f:
          return dict(json.load(f), too_big=too_big)

  def torch(self, row: TorchRow) -> dict:
    s = self._sizes
    command = [self._args.torch_python, self._args.torch_reference,
               "--device", s.torch_device, "--bf16", "--channels-last",
               "--batch", str(s.batch_per_device),
               "--size", str(s.small_size), "--expander", str(row.expander),
               "--steps", str(s.torch_steps)]
    if row.compiled:
      command.append("--compile")
    status, output = self._run(row.name, command)
    if status is None:
      return {"note": "not run: time budget" if not output
              else "stopped at the time budget"}
    found = re.search(r"images/sec=([\d.]+)", output)
    median = re.search(r"median ([\d.]+)s", output)
    first = re.search(r"warmup 0: ([\d.]+)s", output)
    if status != 0 or not found:
      return {"note": "failed: " + _last_line(output)}
    return {"images_per_s": float(found.group(1)),
            "step_s": float(median.group(1)),
            "first_step_s": float(first.group(1)) if first else None}


def _last_line(output: str) -> str:
  lines = [l for l in output.strip().splitlines() if l.strip()]
  return lines[-1][:200] if lines else "no output"


# ------------------------------------------------------------- the table ---


def _number(x: float) -> str:
  return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _bytes(n) -> str:
  if n is None:
    return ""
  return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _ours_cells(row: Row, r: dict, torch: dict) -> list[str]:
  if "images_per_s" not in r:
    return [row.encoder, f"{row.size}", f"{row.expander}", row.augment_on,
            "", r["note"]] + [""] * (len(HEADER) - 6)
  tflops = r["flops"] / r["step_s"] / 1e12
  peak = r["matmul_peak_gflops"] / 1e3
  batch = f"{r['batch']}"
  if r["too_big"]:
    batch += f" ({'/'.join(map(str, r['too_big']))}: out of memory)"
  loop = ""
  if "loop_images_per_s" in r:
    loop = (f"{r['loop_images_per_s']:.0f} "
            f"({r['loop_images_per_s'] / r['images_per_s']:.2f}x), "
            f"+{r['checkpoint_stall_s']:.2f} s/ckpt")
  vs = []
  if row.encoder == "resnet18":
    for mode in ("eager", "torch.compile"):
      t = torch.get(f"PyTorch {mode} resnet18 {row.expander}", {})
      if "images_per_s" in t:
        per_chip = r["images_per_s"] / r["devices"]
        vs.append(f"{per_chip / t['images_per_s']:.2f}x {mode}")
  crops = ""
  if "crop_s" in r:
    crops = (f"{1e3 * r['crop_s']:.1f} ({100 * r['crop_s'] / r['step_s']:.0f}"
             f"% time, {100 * r['crop_flops'] / r['flops']:.0f}% FLOPs)")
  return [row.encoder, f"{row.size}", f"{row.expander}", row.augment_on,
          batch, f"{r['images_per_s']:.0f}", f"{1e3 * r['step_s']:.1f}",
          crops, _number(r["flops"] / 1e9), _number(tflops),
          f"{100 * tflops / peak:.0f}%", _memory(r),
          f"{r['compile_s']:.0f}", loop, ", ".join(vs)]


def _memory(r: dict) -> str:
  """The process's peak; XLA's plan for the step where there is none."""
  if r["peak_device_bytes"] is not None:
    return _bytes(r["peak_device_bytes"])
  plan = r["xla_argument_bytes"] + r["xla_temp_bytes"]
  return f"n/a (XLA's plan {_bytes(plan)})"


HEADER = ["model", "px", "expander", "augment_on", "batch/chip", "images/s",
          "step ms", "crop + resize ms (of the step)", "GFLOP/step (XLA)", "TFLOP/s", "% of bf16 peak",
          "peak device memory", "compile s",
          "loop images/s (vs step), checkpoint stall", "ours / PyTorch"]


def table(rows: list, results: list[dict]) -> str:
  torch = {row.name: r for row, r in zip(rows, results)
           if isinstance(row, TorchRow)}
  lines = ["| " + " | ".join(HEADER) + " |",
           "|" + "---|" * len(HEADER)]
  for row, r in zip(rows, results):
    if isinstance(row, Row):
      cells = _ours_cells(row, r, torch)
    elif "images_per_s" in r:
      first = r["first_step_s"]
      cells = ([row.name, "", f"{row.expander}", "host", "",
                f"{r['images_per_s']:.0f}", f"{1e3 * r['step_s']:.1f}"]
               + [""] * 4
               + [f"first step {first:.0f}" if first is not None else "",
                  "", ""])
    else:
      cells = [row.name, "", f"{row.expander}", "host", "", r["note"]] + [
          ""] * (len(HEADER) - 6)
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def summary(rows: list, results: list[dict], wall_s: float,
            tiny: bool) -> str:
  ours = [r for row, r in zip(rows, results)
          if isinstance(row, Row) and "images_per_s" in r]
  if not ours:
    return f"No row of ours finished ({wall_s:.0f} s)."
  peaks = [r["matmul_peak_gflops"] / 1e3 for r in ours]
  first = ours[0]
  caveat = ("--tiny checks that every row runs; it measures nothing (our "
            "encoder is width 8, the PyTorch reference's width 64). " if tiny
            else "")
  return caveat + (
      f"{first['device_kind']} x{first['devices']} ({first['backend']}), "
      f"jax {first['jax_version']}; bf16 matmul peak "
      f"{_number(min(peaks))}-{_number(max(peaks))} TFLOP/s "
      f"(n={first['matmul_n']}, random operands, measured in each row's "
      f"process); TensorFlow imported: "
      f"{any(r['tensorflow_imported'] for r in ours)}; wall {wall_s:.0f} s")

def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tiny", action="store_true",
                      help="CPU-sized: width 8, 32 px, batch 8, expanders "
                      "64 and 32")
  parser.add_argument("--torch_reference",
                      help="torch_vicreg_step.py (../shared/peers/ in the "
                      "project); its rows are left out without it")
  parser.add_argument("--torch_python", default=sys.executable,
                      help="the Python that has torch")
  parser.add_argument("--wheels", help="wheels of missing packages")
  parser.add_argument("--only", action="append",
                      help="only the rows whose name holds this (repeatable),"
                      " e.g. 'resnet50 224px 2048' or 'PyTorch'")
  parser.add_argument("--out_dir", help="writes table.md, rows.json, log.txt")
  parser.add_argument("--budget_s", type=float, default=None,
                      help="stop starting rows after this many seconds "
                      "(default 450; --tiny: 1800)")
  args = parser.parse_args()
  if args.budget_s is None:
    args.budget_s = 1800 if args.tiny else 450
  if args.torch_reference and not os.path.isfile(args.torch_reference):
    sys.exit(f"error: --torch_reference={args.torch_reference} is not a "
             "file: copy ../shared/peers/torch_vicreg_step.py into the "
             "checkout (BENCHMARKS.md, 'On an accelerator')")
  if args.wheels and not os.path.isdir(args.wheels):
    sys.exit(f"error: --wheels={args.wheels} is not a directory")
  site = install_missing(args.wheels)
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (_ROOT, site, env.get("PYTHONPATH")) if p)
  env["PYTHONUNBUFFERED"] = "1"
  sizes = TINY if args.tiny else FULL
  rows = [row for row in plan(sizes, with_torch=bool(args.torch_reference))
          if not args.only or any(part in row.name for part in args.only)]
  out_dir = args.out_dir or tempfile.mkdtemp(prefix="vicreg_accel_")
  os.makedirs(out_dir, exist_ok=True)
  start = time.monotonic()
  results = []
  with open(os.path.join(out_dir, "log.txt"), "w") as log:
    runner = Runner(args, sizes, env, log)
    for row in rows:
      results.append(runner.ours(row) if isinstance(row, Row)
                     else runner.torch(row))
      # After every row: a run killed from outside keeps what it measured.
      text = write_results(out_dir, rows[:len(results)], results,
                           time.monotonic() - start, args.tiny)
  print(text + f"(table.md, rows.json and log.txt in {out_dir})")


def write_results(out_dir: str, rows: list, results: list[dict],
                  wall_s: float, tiny: bool) -> str:
  """table.md and rows.json in out_dir; returns the table's text."""
  text = (table(rows, results) + "\n\n"
          + summary(rows, results, wall_s, tiny) + "\n")
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(text)
  with open(os.path.join(out_dir, "rows.json"), "w") as f:
    json.dump([dict(dataclasses.asdict(row), name=row.name, **r)
               for row, r in zip(rows, results)], f, indent=1)
  return text

if __name__ == "__main__":
  main()
