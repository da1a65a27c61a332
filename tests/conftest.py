"""Shared fixtures."""

# torchvision first: imported after TensorFlow, it crashes the process
# (TF 2.21 + torchvision 0.29); tests/test_torch_weights.py needs both.
import torchvision  # pylint: disable=unused-import

import tempfile  # pylint: disable=g-bad-import-order

from vicreg_haiku import xla_flags

xla_flags.set_defaults()  # the XLA flags launch.py runs with, before JAX starts

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest

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
  """A persistent XLA cache for the session: the phases of the end-to-end
  tests compile the same steps (same shapes, new closures) many times."""
  del config
  jax.config.update("jax_compilation_cache_dir",
                    tempfile.mkdtemp(prefix="vicreg_xla_cache_"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
