"""Shared fixtures."""

# torchvision first: imported after TensorFlow, it crashes the process
# (TF 2.21 + torchvision 0.29); tests/test_torch_weights.py needs both.
import torchvision  # pylint: disable=unused-import

from vicreg_haiku import launch_env
from vicreg_haiku import xla_flags

xla_flags.set_defaults()  # the XLA flags launch.py runs with, before JAX starts
# CI installs the tpu extra (for tests/test_plan.py): JAX would start libtpu
# in every test process, as launch.py does not (launch_env.prepare).
launch_env.skip_absent_tpu()

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

import cifar10_fake
import stl10_fake


@pytest.fixture(scope="session")
def fake_stl10_dir(tmp_path_factory) -> str:
  """A tfds data_dir holding a tiny prepared stl10 (real builder, no network)."""
  root = tmp_path_factory.mktemp("stl10")
  stl10_fake.prepare(str(root / "tensorflow_datasets"), str(root / "download"))
  return str(root / "tensorflow_datasets")


@pytest.fixture(scope="session")
def fake_cifar10_dir(tmp_path_factory) -> str:
  """A tfds data_dir holding a tiny prepared cifar10 (real builder, offline)."""
  root = tmp_path_factory.mktemp("cifar10")
  cifar10_fake.prepare(str(root / "tensorflow_datasets"),
                       str(root / "download"))
  return str(root / "tensorflow_datasets")


def pytest_configure(config):
  """JAX's persistent compilation cache, kept across sessions: the phases of
  the end-to-end tests compile the same steps (same shapes, new closures)
  many times, and a rerun of the suite compiles almost nothing. launch.py's
  directory (~/.cache/vicreg_haiku/jax; $JAX_COMPILATION_CACHE_DIR wins):
  entries are keyed by the program, the XLA flags and the jax version, and
  the cache is bounded and file-locked, so concurrent sessions and runs
  share it safely. Subprocesses (launch.py and the helper scripts) get the
  same settings through the JAX_* variables it sets."""
  del config
  launch_env.enable_compilation_cache(launch_env.default_cache_dir())
