"""The package's layout: every module in a layer, package data in the wheel.

The layers themselves and the absence of import cycles are import-linter's
contracts in setup.cfg, which .ci/run checks with `lint-imports`.
"""

import configparser
import os
import pkgutil
import shutil
import subprocess
import sys
import zipfile

import vicreg_haiku

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
_CLASS_LIST = "vicreg_haiku/data/imagenet100_classes.txt"


def _layers() -> list[set[str]]:
  parser = configparser.ConfigParser()
  parser.read(os.path.join(_ROOT, "setup.cfg"))
  text = parser["importlinter:contract:layers"]["layers"]
  return [{name.strip() for name in line.replace("|", ":").split(":")}
          for line in text.strip().splitlines()]


def test_every_module_of_the_package_sits_in_a_layer():
  # A top-level module left out of the contract would be checked by nothing:
  # a lower layer could import it unnoticed.
  named = set().union(*_layers())
  modules = {m.name for m in pkgutil.iter_modules(vicreg_haiku.__path__)}
  assert modules - named == set(), "add these to setup.cfg's layers"
  assert named - modules == set(), "setup.cfg names modules that do not exist"


def test_the_wheel_holds_the_class_list_and_the_installed_package_reads_it(
    tmp_path):
  # Built from a copy holding only what a clone holds: a build/ left in the
  # tree by an earlier build would hand the wheel stale files.
  source = tmp_path / "source"
  source.mkdir()
  for name in ("setup.cfg", "pyproject.toml", "README.md"):
    shutil.copy(os.path.join(_ROOT, name), source / name)
  shutil.copytree(os.path.join(_ROOT, "vicreg_haiku"), source / "vicreg_haiku",
                  ignore=shutil.ignore_patterns("__pycache__"))
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                  "--no-build-isolation", "-q", "-w", str(tmp_path),
                  str(source)], check=True, capture_output=True)
  wheel, = tmp_path.glob("vicreg_haiku-*.whl")
  installed = tmp_path / "site"
  with zipfile.ZipFile(wheel) as archive:
    assert _CLASS_LIST in archive.namelist()
    archive.extractall(installed)
  # Read through the package as installed from the wheel, not the source
  # tree: the tree is off the path, the extracted wheel on it.
  check = ("import vicreg_haiku.data.class_filter as c; "
           "print(c.__file__); print(len(c.class_filter('imagenet100')))")
  done = subprocess.run([sys.executable, "-c", check], cwd=str(tmp_path),
                        env=dict(os.environ, PYTHONPATH=str(installed)),
                        capture_output=True, text=True, check=True)
  where, count = done.stdout.split()[-2:]
  assert where.startswith(str(installed)), where
  assert count == "100"
