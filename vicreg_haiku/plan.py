"""Plans a run on a Cloud TPU slice before renting one.

  python -m vicreg_haiku.plan --config=configs/imagenet.py --topology=v5e-8 \
      [--config.KEY=VALUE ...] [--json=FILE] [--examples=N] [--top=N]

Compiles every program the config's run would compile (the pretraining
step, its views on the device path, the encoder's forward for kNN / probes,
the probe, the fine-tune and supervised steps) with the real TPU compiler
(libtpu: pip install -e ".[tpu]") for the named slice and the run's
shardings, and prints one row per program, per chip: whether it compiled,
its memory plan against the chip's HBM, XLA's FLOPs and bytes accessed, and
the compiler's estimated step time (training/compiled_costs.py) with the
images/s and MFU that follow; then pretraining's estimated run time. Runs
on any x86 machine, a TPU VM included, computing on the CPU only (it never
takes a TPU from a job). Reads no data: shapes come from the config.

Exit code 0: every program compiles and fits; 2: one does not (its row
gives the largest per-chip batch that fits, found by halving); 1: a usage
mistake (an unknown slice, no libtpu, a config error), one line.
"""

import dataclasses
import functools
import json
import sys
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from vicreg_haiku import command_line
from vicreg_haiku.models import precision
from vicreg_haiku.training import compiled_costs
from vicreg_haiku.training import tpu_slices
from vicreg_haiku.utils import compile_target

# Imported in main, after the flags are read (so --help and a mistake in
# them wait for no TensorFlow): what reads configs and builds the programs.
# pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file.", lock_config=True)
_TOPOLOGY = flags.DEFINE_string(
    "topology", None, "The TPU slice: Cloud's name (v5e-8, v5litepod-8, "
    "v4-8, v5p-8, v6e-8, v5e-32, v4-32, ...) or JAX's (v5e:2x4, v4:2x2x1).")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")
_EXAMPLES = flags.DEFINE_integer(
    "examples", None, "Images in an epoch of pretraining, for the run time "
    "(default: known for the tfds datasets the configs name).")
_TOP = flags.DEFINE_integer(
    "top", 0, "Also list each program's N costliest operations (by JAX "
    "op name, over every instruction made of it) by estimated cycles.")
_PROGRAMS = flags.DEFINE_list(
    "programs", None, "Plan only these (default: all the run compiles): "
    "pretrain, views, features, probe, finetune, supervised.")
flags.mark_flags_as_required(["config", "topology"])

# Split sizes of the datasets the configs name (tfds catalog), so the plan
# needs no data for the run time and the probe's rows.
_SPLIT_SIZES = {
    "imagenet2012": {"train": 1_281_167, "validation": 50_000},
    "stl10": {"unlabelled": 100_000, "train": 5_000, "test": 8_000},
    "cifar10": {"train": 50_000, "test": 10_000},
    "cifar100": {"train": 50_000, "test": 10_000},
}
_NUM_CLASSES = {"imagenet2012": 1000, "stl10": 10, "cifar10": 10,
                "cifar100": 100}
# The one image size of a dataset whose images share it: the device path's
# canvas (canvas.canvas_side), known without the data.
_IMAGE_SIDE = {"stl10": 96, "cifar10": 32, "cifar100": 32}
# Classes the head has when the plan cannot tell (its cost is negligible).
_UNKNOWN_CLASSES = 1000
_GB = 1e9


@dataclasses.dataclass
class Row:
  name: str
  per_chip: int  # examples per chip a run of it handles
  compiled: bool = False
  error: str | None = None
  fits_per_chip: int | None = None  # where it did not fit: what does
  hbm_bytes: int = 0
  hbm_capacity_bytes: int = 0
  flops: float = 0.0
  bytes_accessed: float = 0.0
  estimated_step_seconds: float | None = None
  images_per_second_per_chip: float | None = None
  mfu: float | None = None
  # Loops whose trip count the compiler does not know: counted once each.
  unknown_loops: int = 0
  top: list = dataclasses.field(default_factory=list)

  def json(self) -> dict:
    keys = ("compiled", "error", "hbm_bytes", "hbm_capacity_bytes", "flops",
            "bytes_accessed", "estimated_step_seconds",
            "images_per_second_per_chip", "mfu", "per_chip", "fits_per_chip")
    return {k: getattr(self, k) for k in keys}


def _split_size(config, split: str) -> int | None:
  """Images of a "+"-joined split, where the plan knows them without data."""
  name = config.dataset.name
  if name == "digits":
    from vicreg_haiku.data import datasets
    return datasets.num_examples(config, split)  # embedded in the wheel
  sizes = _SPLIT_SIZES.get(name)
  if sizes is None or config.dataset.classes:
    return None
  parts = [sizes.get(part) for part in split.split("+")]
  return None if None in parts else sum(parts)


def _image_side(config) -> int | None:
  return None if config.dataset.classes else _IMAGE_SIDE.get(
      config.dataset.name)


def _num_classes(config) -> int | None:
  if config.dataset.name == "digits":
    return 10
  return None if config.dataset.classes else _NUM_CLASSES.get(
      config.dataset.name)


def _one_line(error: Exception) -> str:
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return (lines[0] if lines else type(error).__name__)[:300]


def _does_not_fit(row: Row) -> bool:
  return not row.compiled or row.hbm_bytes > row.hbm_capacity_bytes


def _out_of_memory(row: Row) -> bool:
  """Whether a smaller batch could make the row fit (an error of another
  kind is not the batch's)."""
  return (row.hbm_bytes > row.hbm_capacity_bytes
          or "RESOURCE_EXHAUSTED" in (row.error or ""))


def _compile(program, per_chip: int, chips: int, tpu_slice, top: int,
             compiled_before: dict) -> Row:
  """One program compiled at `per_chip`, its row of figures; a program
  whose lowering another had already (the fine-tune's and the supervised
  step at one batch) is taken from `compiled_before`, not compiled again."""
  chip = tpu_slice.chip
  row = Row(program.name, per_chip, hbm_capacity_bytes=chip.hbm_bytes)
  batch = per_chip * chips if program.per_image else program.batch
  start = time.perf_counter()
  try:
    with compile_target.compiling_for("tpu"):
      lowered = program.lower(batch)
      text = lowered.as_text()
      if text not in compiled_before:
        compiled_before[text] = lowered.compile()
      compiled = compiled_before[text]
  except Exception as error:  # pylint: disable=broad-except
    row.error = _one_line(error)
    return row
  seconds = time.perf_counter() - start
  row.compiled = True
  memory = compiled.memory_analysis()
  row.hbm_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                   - memory.alias_size_in_bytes + memory.temp_size_in_bytes
                   + memory.generated_code_size_in_bytes)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  row.flops = float(cost.get("flops", 0.0))
  row.bytes_accessed = float(cost.get("bytes accessed", 0.0))
  cycles = compiled_costs.estimated_cycles(compiled.as_text())
  row.estimated_step_seconds = cycles.cycles / chip.clock_hz
  row.unknown_loops = cycles.unknown_trip_counts
  if program.per_image and row.estimated_step_seconds > 0:
    row.images_per_second_per_chip = per_chip / row.estimated_step_seconds
    row.mfu = row.flops / row.estimated_step_seconds / chip.peak_bf16_flops
  row.top = compiled_costs.by_operation(cycles)[:top]
  print(f"  {program.name}: compiled in {seconds:.0f} s", file=sys.stderr)
  return row


def _plan_program(program, chips: int, tpu_slice, top: int,
                  compiled_before: dict) -> Row:
  """The program's row; where it does not fit, the largest per-chip batch
  that does, found by halving."""
  if program.per_image and program.batch % chips:
    return Row(program.name, 0, error=(
        f"a batch of {program.batch} does not split over {chips} chips: "
        "give the phase a multiple of the chip count"),
               hbm_capacity_bytes=tpu_slice.chip.hbm_bytes)
  per_chip = program.batch // chips if program.per_image else program.batch
  row = _compile(program, per_chip, chips, tpu_slice, top, compiled_before)
  trial = per_chip
  while program.per_image and _out_of_memory(row) and trial > 1:
    trial //= 2
    smaller = _compile(program, trial, chips, tpu_slice, 0, compiled_before)
    if not _does_not_fit(smaller):
      row.fits_per_chip = trial
      break
  return row


def _programs(config, mesh):
  from vicreg_haiku import tpu_programs
  num_classes = _num_classes(config) or _UNKNOWN_CLASSES
  train = _split_size(config, config.dataset.train_split)
  return (tpu_programs.pretrain(config, mesh)
          + [tpu_programs.features(config, mesh),
             tpu_programs.probe(config, mesh, num_classes, train)]
          + [tpu_programs.classifier_step(config, mesh, phase, num_classes)
             for phase in ("finetune", "supervised")])


def _chosen(programs, names: list[str]):
  """The programs whose names begin with one of `names`."""
  unknown = [n for n in names
             if not any(p.name.startswith(n) for p in programs)]
  if unknown:
    raise ValueError(f"--programs={','.join(names)}: this run compiles no "
                     f"{unknown[0]!r}; it compiles "
                     f"{', '.join(p.name for p in programs)}")
  return [p for p in programs if any(p.name.startswith(n) for n in names)]


def _fmt(value, spec: str, missing: str = "-") -> str:
  return missing if value is None else format(value, spec)


def _table(rows: list[Row], tpu_slice) -> str:
  gib = 1 << 30
  lines = [
      f"{'program':<16} {'per chip':>8} {'HBM GiB':>13} {'GFLOP':>9} "
      f"{'GB accessed':>11} {'est. ms':>9} {'est. img/s':>10} "
      f"{'est. MFU':>8}"]
  for row in rows:
    if not row.compiled:
      lines.append(f"{row.name:<16} {row.per_chip:>8} not compiled: "
                   f"{row.error}")
      continue
    hbm = (f"{row.hbm_bytes / gib:.2f} of "
           f"{row.hbm_capacity_bytes / gib:.0f}")
    lines.append(
        f"{row.name:<16} {row.per_chip:>8} {hbm:>13} "
        f"{row.flops / 1e9:>9,.1f} {row.bytes_accessed / _GB:>11,.2f} "
        f"{1e3 * row.estimated_step_seconds:>9,.2f} "
        f"{_fmt(row.images_per_second_per_chip, '10,.0f'):>10} "
        f"{_fmt(row.mfu, '8.1%'):>8}")
    if row.hbm_bytes > row.hbm_capacity_bytes:
      lines.append(f"{'':<16} does not fit in HBM")
    if row.unknown_loops:
      lines.append(f"{'':<16} {row.unknown_loops} loop(s) of a trip count "
                   "known only at run time, each counted once: it runs longer")
    for cycles, count, operation in row.top:
      share = cycles / tpu_slice.chip.clock_hz / row.estimated_step_seconds
      lines.append(f"{'':<18}{100 * share:5.1f}% in {count:>3} {operation}")
  for row in rows:
    if row.fits_per_chip is not None:
      lines.append(f"{row.name}: fits at {row.fits_per_chip} per chip")
    elif _out_of_memory(row):
      lines.append(f"{row.name}: does not fit even at 1 per chip")
  return "\n".join(lines)


def _run_seconds(config, row: Row | None) -> tuple[float | None, int | None]:
  """(estimated pretraining seconds, images an epoch) for the config's
  epochs; None where the epoch's size or the step time is unknown."""
  examples = _EXAMPLES.value or _split_size(config,
                                            config.dataset.pretrain_split)
  if row is None or row.estimated_step_seconds is None or not examples:
    return None, examples
  steps = config.pretrain.epochs * (examples // config.pretrain.batch_size)
  return steps * row.estimated_step_seconds, examples


def _report(config, rows: list[Row], tpu_slice) -> float | None:
  """Prints the table and what it means; returns the run's seconds."""
  chips = tpu_slice.chips
  pretrain = next((r for r in rows if r.name == "pretrain step"), None)
  views = ""
  if config.pretrain.augment_on == "device":
    if _CONFIG.value.pretrain.canvas_size:
      why = "pretrain.canvas_size"
    elif _image_side(_CONFIG.value):
      why = f"the size of every {config.dataset.name} image"
    else:
      why = "the data would decide it; --config.pretrain.canvas_size=N sets it"
    views = f" (canvas {config.pretrain.canvas_size} px: {why})"
  print(f"{tpu_slice.name}: {chips} chips of TPU {tpu_slice.generation} "
        f"({tpu_slice.jax_topology}, {tpu_slice.hosts} host"
        f"{'s' * (tpu_slice.hosts > 1)}), {config.model.encoder} at "
        f"{config.dataset.image_size} px, precision {config.precision}, "
        f"augment_on={config.pretrain.augment_on}{views}")
  print(_table(rows, tpu_slice))
  chip = tpu_slice.chip
  print(f"Per chip. The compiler's estimates, not measurements: summed "
        f"estimated cycles of what runs at {chip.clock_hz / 1e9:g} GHz; MFU "
        f"against {chip.peak_bf16_flops / 1e12:g} TFLOP/s bf16 with XLA's "
        "FLOPs; collectives, overlap of asynchronous copies and the host's "
        "input pipeline are left out.")
  run_seconds, examples = _run_seconds(config, pretrain)
  if run_seconds is not None:
    steps_per_epoch = examples // config.pretrain.batch_size
    print(f"Pretraining: {examples:,} images an epoch, {steps_per_epoch:,} "
          f"steps of {config.pretrain.batch_size}: "
          f"{steps_per_epoch * pretrain.estimated_step_seconds / 60:,.1f} "
          f"min an epoch, {config.pretrain.epochs} epochs "
          f"{run_seconds / 3600:,.1f} h, "
          f"{run_seconds * chips / 3600:,.0f} chip-hours (estimated).")
  elif pretrain is not None and pretrain.compiled:
    print("Pretraining run time: the epoch's size is unknown without the "
          "data; --examples=N gives it.")
  views = next((r for r in rows if r.name == "views"), None)
  if views is not None and views.compiled and pretrain.compiled:
    share = views.estimated_step_seconds / pretrain.estimated_step_seconds
    print(f"The views are {100 * share:.0f}% of the pretraining step's "
          "estimated time (made inside it).")
  if pretrain is not None and pretrain.compiled and pretrain.per_chip < 128:
    print(f"The pretraining step has {pretrain.per_chip} images a chip: a "
          "TPU's matrix units want at least 128 rows; "
          f"--config.pretrain.batch_size={128 * chips} would fill them.")
  if config.precision != "bfloat16":
    print(f"precision={config.precision}: TPUs compute in bfloat16 at full "
          "rate; --config.precision=bfloat16.")
  return run_seconds


def main(argv):
  del argv  # parse_flags refused any
  # Computes on the CPU: compiling needs no TPU, and a TPU VM's chips stay
  # free for its jobs.
  jax.config.update("jax_platforms", "cpu")
  from vicreg_haiku import launch_env
  launch_env.import_tensorflow_quietly()
  from vicreg_haiku import config_checks
  from vicreg_haiku import tpu_programs
  from vicreg_haiku import user_errors
  try:
    tpu_slice = tpu_slices.parse(_TOPOLOGY.value)
    mesh = tpu_slices.mesh(tpu_slice)
    # The network and batch a launch of these flags would train.
    config_checks.apply_vit_defaults(
        _CONFIG.value, config_flags.get_override_values(flags.FLAGS["config"]))
    precision.set_compute_dtype(_CONFIG.value.precision)
    config = tpu_programs.plan_config(_CONFIG.value,
                                      _image_side(_CONFIG.value))
    programs = _programs(config, mesh)
    if _PROGRAMS.value:
      programs = _chosen(programs, _PROGRAMS.value)
  except (tpu_slices.TopologyError, *user_errors.USER_ERRORS,
          ValueError) as error:
    command_line.exit_with(str(error))
  print(f"compiling {len(programs)} programs for {tpu_slice.name}",
        file=sys.stderr)
  compiled_before = {}
  rows = [_plan_program(p, tpu_slice.chips, tpu_slice, _TOP.value,
                        compiled_before) for p in programs]
  run_seconds = _report(config, rows, tpu_slice)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"topology": tpu_slice.name, "jax_topology":
                 tpu_slice.jax_topology, "chips": tpu_slice.chips,
                 "hosts": tpu_slice.hosts,
                 "pretrain_run_seconds": run_seconds,
                 "programs": {r.name: r.json() for r in rows}}, f, indent=1)
  return 2 if any(_does_not_fit(r) for r in rows) else 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)),
          flags_parser=functools.partial(command_line.parse_flags,
                                         config_flag=_CONFIG))
