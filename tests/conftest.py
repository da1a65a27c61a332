"""Shared fixtures."""

import pytest

import stl10_fake


@pytest.fixture(scope="session")
def fake_stl10_dir(tmp_path_factory) -> str:
  """A tfds data_dir holding a tiny prepared stl10 (real builder, no network)."""
  root = tmp_path_factory.mktemp("stl10")
  stl10_fake.prepare(str(root / "tensorflow_datasets"), str(root / "download"))
  return str(root / "tensorflow_datasets")
