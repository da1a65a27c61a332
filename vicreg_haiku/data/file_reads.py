"""Reading a streamed folder's files during training, when some fail.

A file indexed at the start can fail to read later: deleted, or a network
filesystem or bucket hiccup. A run must not end on it. Transient errors are
retried with backoff; a file that still does not read (or no longer exists)
is left out: one warning names the count, the first paths and where the full
list is written, each time the count doubles. The example is replaced by the
next readable file in the shard's order (wrapping around), so the batch at
step k stays a function of the config, k and the set of readable files, and
a resumed run reads the same batches as one that was not interrupted.
"""

import os
import threading
import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from vicreg_haiku.utils import writers

# Tries per file, and the first wait between them (doubling after each).
_ATTEMPTS = 4
_FIRST_WAIT_S = 0.25
_SHOWN = 5


class Reader:
  """Bytes of a shard's files by local index, skipping unreadable ones."""

  def __init__(self, paths: Sequence[str], list_path: Optional[str], *,
               attempts: int = _ATTEMPTS, first_wait_s: float = _FIRST_WAIT_S):
    self._paths = list(paths)
    self._list_path = list_path
    self._attempts = attempts
    self._first_wait_s = first_wait_s
    self._left_out: dict[int, str] = {}  # local index -> why
    self._warned_at = 0
    self._lock = threading.Lock()

  def _try(self, j: int) -> Optional[bytes]:
    """File j's bytes, or None once it is missing or the tries run out."""
    wait = self._first_wait_s
    for attempt in range(self._attempts):
      try:
        with tf.io.gfile.GFile(self._paths[j], "rb") as f:
          return f.read()
      except tf.errors.NotFoundError:
        return self._leave_out(j, "not found")
      except (OSError, tf.errors.OpError) as error:
        if attempt + 1 == self._attempts:
          return self._leave_out(j, str(error).splitlines()[0][:120])
        time.sleep(wait)
        wait *= 2

  def read(self, i: int) -> tuple[bytes, int]:
    """(bytes, local index read): file i's, or the next readable one's."""
    n = len(self._paths)
    for k in range(n):
      j = (i + k) % n
      if j in self._left_out:
        continue
      data = self._try(j)
      if data is not None:
        return data, j
    raise FileNotFoundError(f"none of the {n} files of this shard reads any "
                            f"more (first: {self._paths[0]})")

  def _leave_out(self, j: int, why: str) -> None:
    """Marks file j left out and rewrites the list; warns when 1, 2, 4,
    8... files are left out."""
    with self._lock:
      if j in self._left_out:
        return
      self._left_out[j] = why
      left_out = sorted(self._left_out.items())
      where = self._write_list(left_out)
      if len(left_out) < max(2 * self._warned_at, 1):
        return
      self._warned_at = len(left_out)
    self._warn(left_out, where)

  def _write_list(self, left_out: list[tuple[int, str]]) -> str:
    """Writes path, tab, why per line; says where, for the warning."""
    if not self._list_path:
      return "the index dir is read-only: no list written"
    try:
      writers.write_atomically(self._list_path, "".join(
          f"{self._paths[j]}\t{why}\n" for j, why in left_out))
    except (OSError, tf.errors.OpError) as error:
      return f"no list written ({error})"
    return f"the list, with reasons: {self._list_path}"

  def _warn(self, left_out: list[tuple[int, str]], where: str) -> None:
    shown = [self._paths[j] for j, _ in left_out[:_SHOWN]]
    more = len(left_out) - len(shown)
    message = (f"{len(left_out)} of {len(self._paths)} files no longer read "
               f"and are left out (each replaced by the next readable "
               f"file): {', '.join(shown)}"
               f"{f' (+{more} more)' if more > 0 else ''}; {where}")
    logging.warning("%s", message)
    writers.console(f"WARNING: {message}")


def read_fn(paths: Sequence[str], labels: np.ndarray,
            list_path: Optional[str]):
  """read(i) -> (encoded bytes, label) for tf.data: Reader's, in a
  py_function (file reads release the GIL)."""
  reader = Reader(paths, list_path)
  label_table = tf.constant(labels, tf.int32)

  def read_bytes(i):
    data, j = reader.read(int(i))
    return data, j

  def read(i):
    data, j = tf.py_function(read_bytes, [i], (tf.string, tf.int64))
    data.set_shape([])
    return data, tf.gather(label_table, j)

  return read


def unreadable_list(stem: Optional[str]) -> Optional[str]:
  """Where a folder's left-out files are listed: beside its index."""
  return None if stem is None else os.fspath(stem) + ".unreadable.txt"
