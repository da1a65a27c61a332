"""The command line of a config-driven entry point (launch.py, plan.py):
absl flags with --config=FILE and its --config.KEY=VALUE overrides, any
mistake one line on stderr and exit code 1."""

import importlib.util
import re
import sys

from absl import flags

_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")
_CONFIG_FILE = re.compile(r"^--?config(?:=(.*))?$")


def _config_file(argv: list[str]) -> str | None:
  """The --config=FILE (or --config FILE) argument, as absl reads it."""
  for i, arg in enumerate(argv):
    match = _CONFIG_FILE.match(arg)
    if match:
      return match.group(1) if match.group(1) is not None else (
          argv[i + 1] if i + 1 < len(argv) else None)
  return None


def _load_config(path: str):
  """get_config() of a config file, `FILE:ARG` passing ARG as ml_collections
  does."""
  file, *args = path.split(":", 1)
  spec = importlib.util.spec_from_file_location("_config_of_flag_error", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*args)


def _unknown_override(argv: list[str]) -> str | None:
  """'--config.a.b=..: <why>' for the first override naming no key."""
  from vicreg_haiku import config_checks  # pylint: disable=g-import-not-at-top
  path = _config_file(argv)
  if path is None:
    return None
  try:
    config = _load_config(path)
  except Exception:  # pylint: disable=broad-except
    return None  # the file's own error is the flag error
  for arg in argv:
    match = _OVERRIDE.match(arg)
    problem = match and config_checks.unknown_key(config, match.group(1))
    if problem:
      return f"{arg}: {problem}"
  return None


def _one_line(error: Exception) -> str:
  """A flag error's message on one line; an error raised by a config file
  (a traceback in its message): its type and last line."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if isinstance(error, flags.Error) and not any(
      line.startswith("Traceback") for line in lines):
    return " ".join(lines)
  return f"{type(error).__name__}: {lines[-1] if lines else ''}"


def parse_flags(argv: list[str],
                config_flag: flags.FlagHolder) -> list[str]:
  """absl's flag parsing, a mistake reported as one line and exit code 1.

  ml_collections raises a KeyError with a traceback for an unknown override
  key: it is named here with the keys that do exist at its level. A config
  file that does not load fails when the config is first read: read here.
  """
  try:
    remaining = flags.FLAGS(argv)
  except Exception as error:  # pylint: disable=broad-except
    exit_with(_unknown_override(argv) or _one_line(error))
  try:
    config_flag.value.keys()
  except OSError as error:
    exit_with(f"--config={_config_file(argv)}: {_one_line(error)}")
  if len(remaining) > 1:
    exit_with(f"unexpected arguments {remaining[1:]}: settings are flags, "
              "--config.KEY=VALUE")
  return remaining


def exit_with(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(1)
