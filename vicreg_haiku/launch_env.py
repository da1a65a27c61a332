"""The process environment a run starts in, set before TF and JAX load.

prepare() imports TensorFlow without its C++ start-up lines, sets the
project's XLA flags and turns on JAX's persistent compilation cache, so a
rerun (or the next phase compiling the same program) loads programs instead
of recompiling them. Importing this module imports neither TF nor JAX.
"""

import glob
import importlib.util
import os
import re
import sys

from vicreg_haiku import xla_flags
from vicreg_haiku.utils import native_stderr

# TF's C++ INFO lines after start-up ("Compiled cluster using XLA!" ...):
# 1 drops INFO only, warnings and errors still print.
_TF_LOG_LEVEL = "1"
# What TF 2.21's libraries print while they load, before absl's C++ logging
# is initialised (so TF_CPP_MIN_LOG_LEVEL does not reach them): absl's
# notice, then INFO lines such as oneDNN's "custom operations are on" and
# cpu_feature_guard's instruction sets. Warnings and errors are kept.
_STARTUP_NOTICE = "WARNING: All log messages before absl::InitializeLog()"
_INFO_LINE = re.compile(r"^I\d{4} \S+\s+\d+ [\w.-]+:\d+\] ")
# The second line of cpu_feature_guard's INFO message.
_CPU_FEATURES = "To enable the following instructions:"
# oneDNN's one-time notice (an ERROR line, harmless) that its uint8 kernels
# fall back to Eigen on this CPU: grappler moves the crops' uint8 -> float32
# cast after their transpose, so the first batch would print it.
_UINT8_NOTICE = "oneDNN supports DT_UINT8 only on platforms with AVX-512"
# PCI vendor id of Google's TPU chips (/sys/bus/pci/devices/*/vendor).
_GOOGLE_PCI_VENDOR = "0x1ae0"
# Bounded, so that JAX evicts least recently used programs and serialises
# access with a file lock (concurrent runs share the directory safely).
CACHE_MAX_BYTES = 2 << 30
# Programs that compile faster than this are not worth a file.
_CACHE_MIN_COMPILE_SECONDS = 0.2


def default_cache_dir() -> str:
  """$JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME/vicreg_haiku/jax
  (~/.cache/vicreg_haiku/jax when that is unset too)."""
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(root, "vicreg_haiku", "jax")


def is_startup_info(line: str) -> bool:
  """True for the INFO lines (and their notice) TF prints while loading."""
  return (line.startswith((_STARTUP_NOTICE, _CPU_FEATURES))
          or bool(_INFO_LINE.match(line)) or _UINT8_NOTICE in line)


def import_tensorflow_quietly() -> None:
  """Imports TensorFlow with its start-up INFO lines (and oneDNN's uint8
  notice) dropped, GPUs hidden from it.

  They are written to file descriptor 2 by C++ code, so stderr is pointed
  at a temporary file for the import; what else was written there (warnings,
  errors) is then printed. Logging only: numerics are unchanged (oneDNN
  stays on; TF_ENABLE_ONEDNN_OPTS is left alone).
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _TF_LOG_LEVEL)
  if "tensorflow" in sys.modules:
    return
  with native_stderr.dropping(is_startup_info):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    # TF only feeds the host; the accelerators belong to JAX. Set before
    # TF's runtime starts, which the next line does.
    tf.config.set_visible_devices([], "GPU")
    # _UINT8_NOTICE fires once a process: here, where it is dropped.
    tf.transpose(tf.zeros([1, 1, 1], tf.uint8), [1, 0, 2])


def enable_compilation_cache(cache_dir: str) -> None:
  """JAX's persistent compilation cache in `cache_dir` ("" leaves it off).

  The settings also go into the environment (JAX reads its options from
  JAX_* variables), so child processes share the directory on the same
  terms: an unbounded writer leaves entries without the access-time files
  the bounded cache's eviction reads, and every later write to the bounded
  cache then fails with a warning.
  """
  if not cache_dir:
    return
  settings = {"jax_compilation_cache_dir": cache_dir,
              "jax_compilation_cache_max_size": CACHE_MAX_BYTES,
              "jax_persistent_cache_min_compile_time_secs":
                  _CACHE_MIN_COMPILE_SECONDS}
  import jax  # pylint: disable=g-import-not-at-top
  for name, value in settings.items():
    os.environ[name.upper()] = str(value)
    jax.config.update(name, value)


def _has_tpu() -> bool:
  """Whether a TPU chip is attached: a PCI device of Google's vendor id (the
  test JAX itself makes before suggesting libtpu)."""
  return any(_read(path).strip() == _GOOGLE_PCI_VENDOR
             for path in glob.glob("/sys/bus/pci/devices/*/vendor"))


def _read(path: str) -> str:
  try:
    with open(path) as f:
      return f.read()
  except OSError:
    return ""


def skip_absent_tpu() -> None:
  """JAX_PLATFORMS=cpu where libtpu is installed (the [tpu] extra, which
  plans need) but the machine has no TPU and no NVIDIA GPU, unless the user
  set JAX_PLATFORMS: JAX would otherwise start libtpu, which prints its
  failure to find a TPU before JAX falls back to the CPU."""
  if ("JAX_PLATFORMS" in os.environ or os.path.exists("/proc/driver/nvidia")
      or importlib.util.find_spec("libtpu") is None or _has_tpu()):
    return
  os.environ["JAX_PLATFORMS"] = "cpu"


def prepare(cache_dir: str | None = None) -> None:
  """Everything above, in order; cache_dir None: default_cache_dir()."""
  skip_absent_tpu()
  import_tensorflow_quietly()
  xla_flags.set_defaults()  # before JAX starts its backend
  enable_compilation_cache(default_cache_dir() if cache_dir is None
                           else cache_dir)
