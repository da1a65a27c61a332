"""A split of a folder of images, listed and checked once: the folder index.

A split is a directory below the folder source's ROOT. It is either
- labelled, torchvision's ImageFolder: no image directly in it, each
  subdirectory a class (images at any depth below it), the class index the
  position of its name in the sorted class names; or
- unlabelled: images directly in it, and every image below it is one example.
Hidden files and directories are skipped, and so are files whose extension
is not an image's.

Every new or changed file is decoded once while indexing, in parallel in
tf.data, so a corrupt, truncated, zero-byte or undecodable file is found here
and left out, named in one warning, never at step 400k of a run. The index
(sorted paths, labels, sizes, modification times, image sizes) is written to
config.dataset.index_dir (default ROOT/.vicreg_haiku_index) and reused by
later runs and by every host. Each run lists the folder again (names, sizes
and modification times: seconds for a million local files) and decodes only
what was added or changed since; on gs:// only names are compared.
"""

import dataclasses
import hashlib
import io
import os
import time
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from vicreg_haiku.data import decoding
from vicreg_haiku.utils import writers

# What tf.io.decode_image reads (BMP, GIF, JPEG, PNG, WebP).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif",
                              ".webp"})
DEFAULT_INDEX_DIR = ".vicreg_haiku_index"
# Bumped when the index's contents change meaning: old indexes are rebuilt.
_FORMAT = 1
_SHOWN_BAD_FILES = 5
_PROGRESS_EVERY_S = 5.0


class FolderError(ValueError):
  """A folder or split that cannot be used as it is (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Listing:
  """What a walk of a split finds: its files and their labels."""
  directory: str
  class_names: Optional[tuple[str, ...]]  # None: an unlabelled split
  paths: np.ndarray  # relative to `directory`, sorted, bytes
  labels: np.ndarray  # int32, -1 for an unlabelled split
  sizes: np.ndarray  # int64 bytes (0 where the filesystem is not local)
  mtimes: np.ndarray  # int64 ns (0 where the filesystem is not local)
  skipped: int  # files that are not images (by extension)


@dataclasses.dataclass(frozen=True)
class Index:
  """A split's usable images: Listing minus the files that do not decode."""
  directory: str
  class_names: Optional[tuple[str, ...]]
  paths: np.ndarray  # relative, sorted, bytes
  labels: np.ndarray  # int32
  heights: np.ndarray  # int32
  widths: np.ndarray  # int32
  stem: Optional[str] = None  # where the index was written (+ ".npz")

  def __len__(self) -> int:
    return len(self.paths)

  def full_paths(self) -> list[str]:
    return [os.path.join(self.directory, p.decode()) for p in self.paths]


def is_local(path: str) -> bool:
  return "://" not in path


def _is_image(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _entries(directory: str) -> tuple[list[str], list[str]]:
  """(subdirectories, files) directly in `directory`, hidden ones left out."""
  names = tf.io.gfile.listdir(directory)
  subdirs, files = [], []
  for name in names:
    if name.startswith("."):
      continue
    if name.endswith("/") or tf.io.gfile.isdir(os.path.join(directory, name)):
      subdirs.append(name.rstrip("/"))
    else:
      files.append(name)
  return sorted(subdirs), sorted(files)


def _walk_local(directory: str, prefix: str = "") -> Iterator[tuple]:
  """(relative path, size, mtime_ns) of every non-hidden file below."""
  with os.scandir(directory) as entries:
    for entry in sorted(entries, key=lambda e: e.name):
      if entry.name.startswith("."):
        continue
      relative = prefix + entry.name
      if entry.is_dir():  # follows links, as torchvision's ImageFolder
        yield from _walk_local(entry.path, relative + "/")
      else:
        stat = entry.stat()
        yield relative, stat.st_size, stat.st_mtime_ns


def _walk_remote(directory: str) -> Iterator[tuple]:
  for root, subdirs, files in tf.io.gfile.walk(directory):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    relative_root = os.path.relpath(root, directory)
    hidden = any(part.startswith(".") for part in relative_root.split("/")
                 if part != ".")
    if hidden:
      continue
    for name in sorted(files):
      if not name.startswith("."):
        relative = os.path.normpath(os.path.join(relative_root, name))
        yield relative, 0, 0


def _walk(directory: str) -> list[tuple]:
  walk = _walk_local if is_local(directory) else _walk_remote
  return sorted(walk(directory))


def list_split(root: str, split: str) -> Listing:
  """Walks ROOT/split; refuses (FolderError) what cannot be a split."""
  directory = os.path.normpath(os.path.join(root, split))
  if not tf.io.gfile.isdir(directory):
    raise FolderError(f"{directory} does not exist or is not a directory "
                      f"(split {split!r} of --config.dataset.folder={root})")
  subdirs, files = _entries(directory)
  writers.console(f"data: listing {directory} ...")
  if any(_is_image(f) for f in files):
    class_names = None
    groups = [("", -1)]
  else:
    class_names = tuple(subdirs)
    groups = [(name + "/", label) for label, name in enumerate(subdirs)]
  rows, skipped = [], 0
  for prefix, label in groups:
    found = _walk(os.path.join(directory, prefix))
    images = [r for r in found if _is_image(r[0])]
    skipped += len(found) - len(images)
    if prefix and not images:
      raise FolderError(
          f"class directory {os.path.join(directory, prefix[:-1])} holds no "
          "images"
          f" ({', '.join(sorted(IMAGE_EXTENSIONS))}): remove it or add images")
    rows += [(prefix + path, label, size, mtime)
             for path, size, mtime in images]
  if not rows:
    raise FolderError(
        f"{directory} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}"
        ") directly or in class subdirectories: point the split at a folder "
        "of images")
  paths, labels, sizes, mtimes = zip(*rows)
  return Listing(directory, class_names,
                 np.array([p.encode() for p in paths], dtype=bytes),
                 np.array(labels, np.int32), np.array(sizes, np.int64),
                 np.array(mtimes, np.int64), skipped)


# --------------------------------------------------------- the cache file ---


def _cache_dirs(root: str, index_dir: Optional[str]) -> list[str]:
  """Where the index is looked for and written, in order: the configured
  dir; else ROOT/.vicreg_haiku_index, then (a read-only ROOT) the user's
  cache, which other hosts do not share (they then check the files too)."""
  if index_dir:
    return [index_dir]
  return [os.path.join(root, DEFAULT_INDEX_DIR),
          os.path.join(os.path.expanduser("~"), ".cache", "vicreg_haiku",
                       "folder_index")]


def _cache_name(directory: str) -> str:
  key = os.path.abspath(directory) if is_local(directory) else directory
  digest = hashlib.sha1(key.encode()).hexdigest()[:12]
  return f"{os.path.basename(os.path.normpath(directory))}-{digest}"


def _read_cache(path: str) -> Optional[dict[str, np.ndarray]]:
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      cached = dict(np.load(io.BytesIO(f.read()), allow_pickle=False))
  except (OSError, ValueError, tf.errors.OpError) as error:
    logging.warning("folder index %s does not read (%s); rebuilding", path,
                    error)
    return None
  if int(cached.get("format", -1)) != _FORMAT:
    return None
  return cached


def _write(path: str, data: bytes) -> None:
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
    f.write(data)
  tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def _write_cache(stems: Sequence[str], arrays: dict[str, np.ndarray],
                 bad_list: str) -> Optional[str]:
  """Writes index + bad-file list to the first writable place; its stem."""
  buffer = io.BytesIO()
  np.savez(buffer, format=np.int64(_FORMAT), **arrays)
  for stem in stems:
    try:
      _write(stem + ".npz", buffer.getvalue())
      _write(stem + ".bad.txt", bad_list.encode())
      return stem
    except (OSError, tf.errors.OpError) as error:
      logging.warning("folder index not written to %s: %s", stem, error)
  return None


def _cached_checks(listing: Listing, cached) -> tuple[np.ndarray, ...]:
  """(known, heights, widths) per listed file from a cached index: known
  where the cache holds the same file (path, size, mtime) already checked;
  -1 sizes for files that did not decode."""
  n = len(listing.paths)
  known = np.zeros(n, bool)
  heights = np.full(n, -1, np.int32)
  widths = np.full(n, -1, np.int32)
  if cached is None:
    return known, heights, widths
  position = {p: i for i, p in enumerate(cached["paths"])}
  for i, path in enumerate(listing.paths):
    j = position.get(path)
    if (j is not None and cached["sizes"][j] == listing.sizes[i]
        and cached["mtimes"][j] == listing.mtimes[i]):
      known[i] = True
      heights[i], widths[i] = cached["heights"][j], cached["widths"][j]
  return known, heights, widths


# ------------------------------------------------------------- checking ---


def _check_shapes(paths: Sequence[str], description: str
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Decodes every file in parallel; (heights, widths), -1 where it fails."""
  n = len(paths)
  heights = np.full(n, -1, np.int32)
  widths = np.full(n, -1, np.int32)
  if not n:
    return heights, widths

  def check(i, path):
    return i, decoding.image_size(tf.io.read_file(path), check=True)

  ds = tf.data.Dataset.from_tensor_slices(
      (tf.range(n, dtype=tf.int64), tf.constant(list(paths))))
  ds = ds.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  ds = ds.ignore_errors().batch(256)  # a file that fails is dropped here
  options = tf.data.Options()
  options.threading.private_threadpool_size = os.cpu_count() or 1
  start = last = time.monotonic()
  done = 0
  for indices, sizes in ds.with_options(options).as_numpy_iterator():
    heights[indices], widths[indices] = sizes[:, 0], sizes[:, 1]
    done += len(indices)
    now = time.monotonic()
    if now - last > _PROGRESS_EVERY_S:
      rate = done / (now - start)
      writers.console(f"data: checking {description}: {done:,} of {n:,} "
                      f"files, {rate:,.0f} files/s, ETA "
                      f"{writers.duration((n - done) / max(rate, 1e-9))}")
      last = now
  return heights, widths


def _why_bad(path: str, size: int) -> str:
  if size == 0:
    return "zero bytes"
  try:
    decoding.image_size(tf.io.read_file(path), check=True)
  except tf.errors.OpError as error:
    return error.message.splitlines()[0][:120]
  return "does not decode"


def _bad_list(listing: Listing, bad: np.ndarray) -> str:
  """One line per file that does not decode: path, tab, why."""
  lines = []
  for i in np.flatnonzero(bad):
    path = os.path.join(listing.directory, listing.paths[i].decode())
    lines.append(f"{path}\t{_why_bad(path, int(listing.sizes[i]))}\n")
  return "".join(lines)


def _warn_bad(listing: Listing, bad: np.ndarray, where: Optional[str]) -> None:
  """One warning: the count, the first few paths, where the full list is."""
  shown = [os.path.join(listing.directory, p.decode())
           for p in listing.paths[bad][:_SHOWN_BAD_FILES]]
  more = int(bad.sum()) - len(shown)
  message = (f"{int(bad.sum())} of {len(listing.paths)} files in "
             f"{listing.directory} do not decode and are left out: "
             f"{', '.join(shown)}{f' (+{more} more)' if more > 0 else ''}; "
             + (f"the list, with reasons: {where}" if where else
                "the index dir is read-only: no list written"))
  logging.warning("%s", message)
  writers.console(f"WARNING: {message}")


def build(root: str, split: str, index_dir: Optional[str]) -> Index:
  """The split's index, from the cache where the folder has not changed."""
  listing = list_split(root, split)
  stems = [os.path.join(d, _cache_name(listing.directory))
           for d in _cache_dirs(root, index_dir)]
  cached, stem = None, None
  for candidate in stems:
    cached = _read_cache(candidate + ".npz")
    if cached is not None:
      stem = candidate
      break
  known, heights, widths = _cached_checks(listing, cached)
  new = np.flatnonzero(~known)
  if cached is None or len(new) or len(cached["paths"]) != len(known):
    if len(new):
      full = [os.path.join(listing.directory, p.decode())
              for p in listing.paths[new]]
      heights[new], widths[new] = _check_shapes(full, listing.directory)
    arrays = dict(paths=listing.paths, labels=listing.labels,
                  sizes=listing.sizes, mtimes=listing.mtimes,
                  heights=heights, widths=widths)
    stem = _write_cache(stems, arrays, _bad_list(listing, heights < 0))
    writers.console(
        f"data: {listing.directory}: {int((heights >= 0).sum()):,} images "
        f"({len(new):,} checked now"
        + (f", {listing.skipped:,} non-image files skipped"
           if listing.skipped else "")
        + (f"; index {stem}.npz)" if stem else "; index not saved)"))
  bad = heights < 0
  if bad.any():
    _warn_bad(listing, bad, stem and stem + ".bad.txt")
  good = ~bad
  return Index(listing.directory, listing.class_names, listing.paths[good],
               listing.labels[good], heights[good], widths[good], stem)
