"""Cloud TPU slices by name, as compile-only devices of the real TPU compiler.

libtpu (the `tpu` install extra, `jax[tpu]`) holds the TPU compiler; JAX's
`topologies.get_topology_desc` gives devices of a slice it has never seen,
which `jit(...).lower(...).compile()` compiles for, on any x86 machine. The
slice must be laid out as Cloud lays it out: its chips per host, and on v4
and v5p one "megacore" device per chip (two TensorCores), which is what
JAX on those VMs sees.
"""

import dataclasses
import importlib.util
import os
import re

import jax
from jax.experimental import topologies
from jax.sharding import Mesh
import numpy as np

from vicreg_haiku.training import parallel
from vicreg_haiku.utils import native_stderr

GIB = 1 << 30
INSTALL = 'pip install -e ".[tpu]"'


@dataclasses.dataclass(frozen=True)
class Chip:
  """One generation's chip, per chip (both TensorCores of a megacore)."""
  jax_name: str  # JAX's topology prefix
  hbm_bytes: int
  peak_bf16_flops: float
  # The clock the compiler's estimated cycles count: the bf16 peak over the
  # matrix units' multiply-adds per cycle (v4's is published, 1,050 MHz).
  clock_hz: float
  megacore: bool  # two TensorCores a VM's JAX sees as one device
  cores_in_name: bool  # Cloud's v4-8 and v5p-8 count TensorCores: 4 chips


# Cloud TPU's system-architecture pages (HBM, bf16 peak per chip); v4: Jouppi
# et al., ISCA 2023 (1,050 MHz, 4 MXUs of 128x128 per core, 2 cores). Derived
# clocks: v5e 197 TFLOP/s over 4 MXUs of 128x128 (2 x 65,536 FLOP a cycle)
# = 1.5 GHz; v5p 459 over 8 such MXUs = 1.75 GHz; v6e 918 over 4 MXUs of
# 256x256 = 1.75 GHz.
CHIPS = {
    "v4": Chip("v4", 32 * GIB, 275e12, 1.05e9, True, True),
    "v5e": Chip("v5e", 16 * GIB, 197e12, 1.5e9, False, False),
    "v5p": Chip("v5", 95 * GIB, 459e12, 1.75e9, True, True),
    "v6e": Chip("v6e", 32 * GIB, 918e12, 1.75e9, False, False),
}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v5": "v5p",
            "v6litepod": "v6e"}
# v5e and v6e slices of up to 8 chips are one host; every larger slice, and
# every v4 and v5p slice, has 4 chips (2 x 2) to a host.
_SINGLE_HOST_CHIPS = 8
_CHIPS_PER_HOST = (2, 2, 1)
EXAMPLES = "v5e-8, v5litepod-8, v4-8, v5p-8, v6e-8, v5e-32, v4-32, v5e:2x4"


class TopologyError(ValueError):
  """An unknown slice name, or no TPU compiler installed."""


@dataclasses.dataclass(frozen=True)
class Slice:
  name: str  # as the user gave it
  chip: Chip
  generation: str  # "v5e"
  shape: tuple[int, ...]  # chips along each axis
  chips_per_host: tuple[int, ...]

  @property
  def chips(self) -> int:
    return int(np.prod(self.shape))

  @property
  def hosts(self) -> int:
    return self.chips // int(np.prod(self.chips_per_host))

  @property
  def jax_topology(self) -> str:
    return f"{self.chip.jax_name}:{'x'.join(map(str, self.shape))}"


def _grid(chips: int, axes: int) -> tuple[int, ...]:
  """Cloud's layout of a power-of-two slice: from 2 x 2 (x 1), the smallest
  axis doubled, the last of equals first (v5e-32 4x8, v4-32 2x2x4)."""
  if chips == 1:
    return (1,) * axes
  shape = [2, 2] + [1] * (axes - 2)
  while np.prod(shape) < chips:
    smallest = min(shape)
    last = max(i for i, n in enumerate(shape) if n == smallest)
    shape[last] *= 2
  return tuple(shape)


def parse(name: str) -> Slice:
  """A slice by Cloud's accelerator name (v5e-8, v5litepod-8, v4-32: cores
  for v4 and v5p, chips otherwise) or JAX's topology (v5e:2x4, v4:2x2x1)."""
  unknown = TopologyError(f"--topology={name}: not a TPU slice this plan "
                          f"knows; give one such as {EXAMPLES}")
  cloud = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name)
  jax_form = re.fullmatch(r"(v\d+[a-z]*):(\d+(?:x\d+)*)", name)
  if cloud:
    generation, count = cloud.group(1), int(cloud.group(2))
  elif jax_form:
    generation, count = jax_form.group(1), None
  else:
    raise unknown
  generation = _ALIASES.get(generation, generation)
  chip = CHIPS.get(generation)
  if chip is None:
    raise unknown
  axes = 3 if chip.megacore else 2
  if count is not None:
    chips = count // 2 if chip.cores_in_name else count
    if chips < 1 or chips & (chips - 1) or (chip.cores_in_name and count % 2):
      raise unknown
    shape = _grid(chips, axes)
  else:
    shape = tuple(int(n) for n in jax_form.group(2).split("x"))
    if len(shape) != axes:
      raise unknown
  single_host = not chip.megacore and np.prod(shape) <= _SINGLE_HOST_CHIPS
  per_host = shape if single_host else _CHIPS_PER_HOST[:axes]
  if any(n % h for n, h in zip(shape, per_host)):
    per_host = shape  # a part-host slice (v4:1x1x1): one host
  return Slice(name, chip, generation, shape, tuple(per_host))


# What libtpu prints when it starts on a machine that is no TPU VM: it looks
# for the VM's accelerator type and worker addresses, which compiling for a
# named slice does not need.
_LIBTPU_NOTICE = re.compile(
    r"TPU accelerator type|TPU worker hostnames|Logging before InitGoogle|"
    r"Source Location Trace|libtpu_init_utils|^\s*$")


def _is_libtpu_notice(line: str) -> bool:
  return bool(_LIBTPU_NOTICE.search(line))


def mesh(tpu_slice: Slice) -> Mesh:
  """The run's 1-D `data` mesh over the slice's compile-only devices."""
  if importlib.util.find_spec("libtpu") is None:
    raise TopologyError("planning for a TPU slice needs the TPU compiler "
                        f"(libtpu): {INSTALL}")
  kwargs = dict(chips_per_host_bounds=tpu_slice.chips_per_host + (1,) * (
      3 - len(tpu_slice.chips_per_host)), num_slices=1)
  if tpu_slice.chip.megacore:
    kwargs["chip_config_name"] = "megacore"
  # Compiling takes no chip, so a job training on this VM's TPU (which
  # holds libtpu's one-process lock) need not stop for a plan.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  # libtpu's start-up lines say it found no TPU VM here, which is expected.
  with native_stderr.dropping(_is_libtpu_notice):
    devices = topologies.get_topology_desc(
        platform="tpu", topology_name=tpu_slice.jax_topology,
        **kwargs).devices
  if len(devices) != tpu_slice.chips:
    raise TopologyError(f"--topology={tpu_slice.name}: libtpu made "
                        f"{len(devices)} devices of {tpu_slice.jax_topology}, "
                        f"not its {tpu_slice.chips} chips")
  return Mesh(np.asarray(devices), (parallel.DATA_AXIS,))
