"""Filters what native code (C++ libraries: TF, libtpu) writes to stderr.

Such code writes to file descriptor 2 directly, past Python's sys.stderr and
before its own logging flags are read, so the only way to drop its start-up
chatter is to point descriptor 2 elsewhere for the call.
"""

import contextlib
import os
import sys
import tempfile
from typing import Callable, Iterator


@contextlib.contextmanager
def dropping(is_noise: Callable[[str], bool]) -> Iterator[None]:
  """Inside the block, descriptor 2 goes to a temporary file; after it,
  every line written there for which `is_noise` is False is printed."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      text = capture.read().decode(errors="replace")
      sys.stderr.write("".join(line for line in text.splitlines(True)
                               if not is_noise(line)))
      sys.stderr.flush()
