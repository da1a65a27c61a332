"""file_reads.Reader: retries with backoff, leaves out, replaces."""

import os

import pytest
import tensorflow as tf

from vicreg_haiku.data import file_reads


@pytest.fixture
def files(tmp_path):
  paths = []
  for i in range(4):
    path = tmp_path / f"f{i}"
    path.write_bytes(bytes([i]) * 3)
    paths.append(str(path))
  return paths


class _Flaky:
  """tf.io.gfile.GFile whose first `failures` opens of `path` fail."""

  def __init__(self, monkeypatch, path, failures, error):
    self.left = failures
    real = tf.io.gfile.GFile

    def gfile(name, mode="r"):
      if name == path and self.left:
        self.left -= 1
        raise error
      return real(name, mode)

    monkeypatch.setattr(tf.io.gfile, "GFile", gfile)


def _sleeps(monkeypatch):
  slept = []
  monkeypatch.setattr(file_reads.time, "sleep", slept.append)
  return slept


def test_a_transient_error_is_retried_with_backoff(files, monkeypatch,
                                                   capsys):
  slept = _sleeps(monkeypatch)
  _Flaky(monkeypatch, files[1], 3,
         tf.errors.UnavailableError(None, None, "bucket hiccup"))
  reader = file_reads.Reader(files, None)
  assert reader.read(1) == (b"\x01" * 3, 1)
  assert slept == [0.25, 0.5, 1.0]
  assert "left out" not in capsys.readouterr().out


def test_a_lasting_error_leaves_the_file_out_for_the_next(files,
                                                         monkeypatch,
                                                         capsys):
  slept = _sleeps(monkeypatch)
  _Flaky(monkeypatch, files[3], 99,
         tf.errors.UnavailableError(None, None, "bucket down"))
  reader = file_reads.Reader(files, str(files[0]) + ".list")
  assert reader.read(3) == (b"\x00" * 3, 0)  # wraps around
  assert len(slept) == 3
  assert reader.read(3) == (b"\x00" * 3, 0)  # not tried again
  assert len(slept) == 3
  out = capsys.readouterr().out
  assert out.count("WARNING: 1 of 4 files no longer read") == 1
  with open(files[0] + ".list") as f:
    assert f.read() == f"{files[3]}\tbucket down\n"


def test_a_missing_file_is_not_retried(files, monkeypatch):
  slept = _sleeps(monkeypatch)
  os.remove(files[2])
  reader = file_reads.Reader(files, None)
  assert reader.read(2) == (b"\x03" * 3, 3)
  assert not slept
