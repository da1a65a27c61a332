"""Where metrics go: metrics.jsonl, TensorBoard, and a console line with ETA.

Only the chief process writes; the others get a writer that drops everything,
so callers never branch on the process index.

Files go through etils.epath: local paths as plain files, gs:// through
tf.io.gfile (epath's choice where TensorFlow is installed). TensorFlow is
imported only where it is used (gs:// and TensorBoard), so the training loop
also runs where it is not installed (an accelerator image;
benchmarks/train_step.py --loop_steps) with a local phase_dir and
`tensorboard=False`.
"""

import json
import os
import time
from typing import Mapping

import numpy as np
from etils import epath

METRICS_FILE = "metrics.jsonl"


def _as_python(value):
  value = np.asarray(value)
  return value.item() if value.ndim == 0 else value.tolist()


def write_atomically(path: str, text: str | bytes) -> None:
  """Writes `text` to `path` through a temporary file and a rename, so a
  reader (or a preempted run) never sees half a file."""
  temporary = epath.Path(path + ".tmp")
  if isinstance(text, bytes):
    temporary.write_bytes(text)
  else:
    temporary.write_text(text)
  temporary.replace(path)


def read_metrics(phase_dir: str) -> list[dict]:
  path = epath.Path(phase_dir) / METRICS_FILE
  if not path.exists():
    return []
  with path.open() as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricsWriter:
  """Appends {"step": int, name: float, ...} lines and TensorBoard scalars.

  tensorboard=False writes metrics.jsonl alone (and needs no TensorFlow).
  """

  def __init__(self, phase_dir: str, *, enabled: bool = True,
               tensorboard: bool = True):
    self._enabled = enabled
    self._path = os.path.join(phase_dir, METRICS_FILE)
    self._summary = None
    if enabled:
      epath.Path(phase_dir).mkdir(parents=True, exist_ok=True)
    if enabled and tensorboard:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      self._tf = tf
      self._summary = tf.summary.create_file_writer(phase_dir)

  def drop_after(self, step: int) -> None:
    """Forgets lines logged after `step`: a resumed run logs them again."""
    if not self._enabled or not epath.Path(self._path).exists():
      return
    kept = [r for r in read_metrics(os.path.dirname(self._path))
            if r["step"] <= step]
    write_atomically(self._path, "".join(json.dumps(r) + "\n" for r in kept))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._enabled:
      return
    record = {"step": int(step)}
    record.update({k: _as_python(v) for k, v in scalars.items()})
    # json writes floats with repr, i.e. full precision.
    with epath.Path(self._path).open("a") as f:
      f.write(json.dumps(record) + "\n")
    if self._summary is None:
      return
    with self._summary.as_default(step=int(step)):
      for name, value in record.items():
        if name != "step":
          self._tf.summary.scalar(name, value)
    self._summary.flush()

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """`image`: uint8 [H, W, 3]."""
    if self._summary is None:
      return
    with self._summary.as_default(step=int(step)):
      self._tf.summary.image(name, image[None])
    self._summary.flush()

  def close(self) -> None:
    if self._summary is not None:
      self._summary.close()


def console(message: str) -> None:
  """A status line on stdout (library chatter goes to absl logging)."""
  print(message, flush=True)


def duration(seconds: float) -> str:
  """'1h02m' or '3m07s'."""
  seconds = int(seconds)
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
  return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
  """A console line per report, at most every `seconds` (and always the
  first and the last): step, done %, chosen metrics, speed, ETA."""

  def __init__(self, phase: str, total_steps: int, first_step: int,
               examples_per_step: int, seconds: float = 10.0):
    self._phase = phase
    self._total = total_steps
    self._examples_per_step = examples_per_step
    self._seconds = seconds
    self._last_step = first_step
    self._last_time = time.perf_counter()
    self._last_line = None

  def report(self, step: int, scalars: Mapping[str, float]) -> float:
    """Maybe prints the line; returns examples/s since the previous report."""
    now = time.perf_counter()
    steps = max(step - self._last_step, 1)
    seconds_per_step = (now - self._last_time) / steps
    self._last_step, self._last_time = step, now
    rate = self._examples_per_step / max(seconds_per_step, 1e-9)
    due = (self._last_line is None or step >= self._total
           or now - self._last_line >= self._seconds)
    if due:
      self._last_line = now
      eta = duration(seconds_per_step * (self._total - step))
      shown = "  ".join(f"{k} {float(v):.4g}" for k, v in scalars.items())
      console(f"{self._phase} {step}/{self._total} "
              f"({100 * step // max(self._total, 1)}%)  {shown}  "
              f"{rate:.0f} img/s  ETA {eta}")
    return rate
