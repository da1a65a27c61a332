"""A workdir's embeddings of every image of a split, streamed to disk.

    OUTPUT/features.npy    float32 (or float16) [N, F]: encoder features
    OUTPUT/expander.npy    the same dtype [N, D]: expander outputs (--expander)
    OUTPUT/labels.npy      int32 [N]: class index, -1 for unlabelled images
    OUTPUT/index.txt       N lines: row i's file path (folders) or
                           "<split>[<id>]" (digits, tfds)
    OUTPUT/embeddings.json what made the rows (workdir, checkpoint step,
                           split, dataset, dtype) and how many are written

Rows are in the split's order (datasets.eval_batches on one process). The
.npy files are allocated at their full size first and filled a batch at a
time by seeks and writes (no memory map: the host holds one batch), and
embeddings.json counts the rows written after each batch, so a pass that is
killed resumes at that row: a row written but not yet counted is written
again, identically. Plain NumPy reads the result:
np.load("OUTPUT/features.npy", mmap_mode="r").
"""

import json
import os
from typing import Callable, Iterator

import jax
import ml_collections
import numpy as np

from vicreg_haiku.data import datasets
from vicreg_haiku.data import sources
from vicreg_haiku.evaluation import features
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.models import precision
from vicreg_haiku.models import transforms
from vicreg_haiku.training import parallel
from vicreg_haiku.utils import errors
from vicreg_haiku.utils import writers

META = "embeddings.json"
FEATURES, EXPANDER, LABELS, INDEX = ("features.npy", "expander.npy",
                                     "labels.npy", "index.txt")
# The dataset keys that decide which images a split holds and how they look.
_DATASET_KEYS = ("name", "folder", "data_dir", "manual_dir", "classes",
                 "image_size")


class OutputError(RuntimeError):
  """An --output that cannot be written or resumed (one-line message)."""


def identity(config: ml_collections.ConfigDict, workdir: str, step: int,
             split: str, expander: bool, dtype: str) -> dict:
  """What makes the rows: an output holding other rows is refused."""
  return {"workdir": os.path.abspath(workdir), "step": step, "split": split,
          "dataset": {k: config.dataset[k] for k in _DATASET_KEYS},
          "expander": expander, "dtype": dtype}


def read_meta(output: str) -> dict:
  """embeddings.json of an output directory."""
  path = os.path.join(output, META)
  if not os.path.isfile(path):
    raise OutputError(f"{path} not found: not an output of "
                      "python -m vicreg_haiku.embed")
  with open(path) as f:
    return json.load(f)


def _npy_offset(path: str) -> int:
  with open(path, "rb") as f:
    np.lib.format.read_magic(f)
    np.lib.format.read_array_header_1_0(f)
    return f.tell()


def _allocate(path: str, shape: tuple[int, ...], dtype: str) -> None:
  """An .npy of `shape` whose data is all zeros (sparse where it can be)."""
  header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False, "shape": shape}
  with open(path, "wb") as f:
    np.lib.format.write_array_header_1_0(f, header)
    f.truncate(f.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize)


def _refusal(output: str, theirs: dict, ours: dict) -> str | None:
  """Why the output at `output` is not a partial run of `ours`, or None."""
  for key, value in ours.items():
    if theirs.get(key) != value:
      return (f"--output={output} holds embeddings of another run "
              f"({key}: {theirs.get(key)!r}, not {value!r}): choose another "
              "--output, or delete it to start again")
  return None


def open_output(output: str, ours: dict, names: np.ndarray,
                dims: dict[str, int]) -> int:
  """Creates `output` for the rows of `ours`, or checks that it holds a
  partial run of the same; returns the rows already written."""
  if "://" in output:
    raise OutputError(f"--output={output}: a local directory (the rows are "
                      "written in place); copy it to a bucket afterwards")
  meta_path = os.path.join(output, META)
  if os.path.exists(output):
    if not os.path.isfile(meta_path):
      raise OutputError(
          f"--output={output} exists and is not an output of this command: "
          "choose a new path (nothing is overwritten)")
    theirs = read_meta(output)
    problem = _refusal(output, theirs["identity"], ours)
    if problem is None and theirs["rows"] != len(names):
      problem = (f"--output={output} was made for {theirs['rows']} rows, "
                 f"but the split now holds {len(names)}: choose another "
                 "--output")
    if problem:
      raise OutputError(problem)
    return int(theirs["rows_written"])
  os.makedirs(output)
  for name, dim in dims.items():
    _allocate(os.path.join(output, name), (len(names), dim), ours["dtype"])
  _allocate(os.path.join(output, LABELS), (len(names),), "int32")
  with open(os.path.join(output, INDEX), "w", encoding="utf-8") as f:
    for name in names:
      f.write(f"{name}\n")
  _write_meta(output, ours, len(names), dims, 0)
  return 0


def _write_meta(output: str, ours: dict, rows: int, dims: dict[str, int],
                rows_written: int) -> None:
  meta = {"identity": ours, "rows": rows, "rows_written": rows_written,
          "arrays": {name: [rows, dim] for name, dim in dims.items()}}
  writers.write_atomically(os.path.join(output, META),
                           json.dumps(meta, indent=2) + "\n")


class _Rows:
  """The output's .npy files, written a block of rows at a time."""

  def __init__(self, output: str, dims: dict[str, int], dtype: str):
    self._files = {}
    for name, dim in dims.items():
      self._files[name] = (self._open(output, name), dim * np.dtype(
          dtype).itemsize, dtype)
    self._files[LABELS] = (self._open(output, LABELS), 4, "int32")

  @staticmethod
  def _open(output: str, name: str):
    path = os.path.join(output, name)
    # Closed by close(): the files stay open for the whole pass.
    return open(path, "r+b"), _npy_offset(path)  # pylint: disable=R1732

  def write(self, start: int, arrays: dict[str, np.ndarray]) -> None:
    for name, array in arrays.items():
      (f, offset), row_bytes, dtype = self._files[name]
      f.seek(offset + start * row_bytes)
      f.write(np.ascontiguousarray(array, dtype).tobytes())
      f.flush()  # in the OS's hands: a killed process loses none of it

  def close(self) -> None:
    for (f, _), _, _ in self._files.values():
      f.close()


def embed_fn(config: ml_collections.ConfigDict, params, net_state,
             expander: bool) -> Callable:
  """images -> [B, F] features (and the expander's [B, D] after them)."""
  if not expander:
    return features.encoder_features(config)(params, net_state)
  apply = jax.jit(transforms.embedding_model(config).apply)

  def both(images):
    (h, z), _ = apply(params, net_state, None, images)
    return jax.numpy.concatenate([h, z], axis=1)

  return both


def write(config: ml_collections.ConfigDict, output: str, split: str,
          apply_fn: Callable, dims: dict[str, int], dtype: str,
          ours: dict, start: int, rows: int) -> Iterator[int]:
  """Writes rows start..rows-1; yields the rows written after each batch."""
  mesh = parallel.make_mesh()
  out = _Rows(output, dims, dtype)
  edges = np.cumsum([0] + list(dims.values()))
  try:
    for values, labels, index in features.stream(
        config, apply_fn, split, mesh, examples=np.arange(start, rows)):
      if len(index) and not np.array_equal(
          index, np.arange(start, start + len(index))):
        raise AssertionError("rows out of order")  # eval_batches' contract
      arrays = {name: values[:, edges[i]:edges[i + 1]]
                for i, name in enumerate(dims)}
      out.write(start, dict(arrays, **{LABELS: labels}))
      start += len(index)
      _write_meta(output, ours, rows, dims, start)
      yield start
  finally:
    out.close()


def embed(config: ml_collections.ConfigDict, workdir: str, output: str,
          split: str, expander: bool, dtype: str) -> Iterator[tuple[int, int]]:
  """Embeds every image of `split` into `output` (resuming a partial one) as
  `dtype` ("float32" or "float16"); yields (rows written, rows) after
  opening and after each batch."""
  if jax.process_count() > 1:
    raise errors.ConfigError("embed runs as one process (its rows are "
                             "written in order): drop --config.distributed")
  precision.set_compute_dtype(config.precision)
  params, net_state, step = pretrained.restore_pretrained(config, workdir)
  names = datasets.example_names(config, split)
  dims = {FEATURES: _encoder_dim(config, params, net_state)}
  if expander:
    dims[EXPANDER] = config.model.expander_dims[-1]
  ours = identity(config, workdir, step, split, expander, dtype)
  start = open_output(output, ours, names, dims)
  yield start, len(names)
  if start < len(names):
    apply_fn = embed_fn(config, params, net_state, expander)
    for written in write(config, output, split, apply_fn, dims, dtype, ours,
                         start, len(names)):
      yield written, len(names)


def _encoder_dim(config, params, net_state) -> int:
  size = config.dataset.image_size
  shapes = jax.eval_shape(
      features.encoder_features(config)(params, net_state),
      jax.ShapeDtypeStruct((1, size, size, 3), np.float32))
  return int(shapes.shape[-1])


def split_shape(config: ml_collections.ConfigDict, split: str):
  """The (H, W) every image of the split shares, or None."""
  return sources.split_info(config, split).image_shape
