"""The folder source: config.dataset.folder=ROOT, local or gs://."""

import functools
import os
from typing import Optional

import numpy as np

from vicreg_haiku.data import class_filter
from vicreg_haiku.data import file_reads
from vicreg_haiku.data import folder_index
from vicreg_haiku.data import shards


@functools.cache
def _folder_index(root: str, part: str,
                  index_dir: Optional[str]) -> folder_index.Index:
  try:
    return folder_index.build(root, part, index_dir)
  except folder_index.FolderError as error:
    raise shards.DataError(str(error)) from None


def open_split(key: shards.SourceKey, split: str) -> shards.Split:
  """The folder split `split` (names joined by "+")."""
  if not key.folder:
    raise shards.DataError(
        "config.dataset.name='folder' needs "
        "--config.dataset.folder=ROOT (a local path or gs://...)")
  indexes = [_folder_index(key.folder, part, key.index_dir)
             for part in split.split("+")]
  description = f"folder {os.path.join(key.folder, split)}"
  labelled = [ix for ix in indexes if ix.class_names is not None]
  class_names = None
  labels = [np.full(len(ix), -1, np.int32) for ix in indexes]
  if len(labelled) == len(indexes):
    class_names = indexes[0].class_names
    for ix in indexes[1:]:
      if ix.class_names != class_names:
        raise shards.DataError(
            f"{ix.directory} has other class directories than "
            f"{indexes[0].directory}: a '+' split joins folders "
            "of the same classes")
    labels = [ix.labels for ix in indexes]
  keep = [np.ones(len(ix), bool) for ix in indexes]
  if key.classes:
    if class_names is None:
      raise shards.DataError(
          f"config.dataset.classes filters classes, but {description} is "
          "unlabelled (images directly in it): point the split at class "
          "subdirectories or clear the filter")
    relabel = class_filter.relabelling(class_names, key.classes, description)
    keep = [relabel[l] >= 0 for l in labels]
    labels = [relabel[l[k]] for l, k in zip(labels, keep)]
    class_names = tuple(sorted(key.classes, key=class_names.index))
  paths = np.concatenate([np.array(ix.full_paths(), dtype=object)[k]
                          for ix, k in zip(indexes, keep)])
  labels = np.concatenate(labels)
  heights = np.concatenate([ix.heights[k] for ix, k in zip(indexes, keep)])
  widths = np.concatenate([ix.widths[k] for ix, k in zip(indexes, keep)])
  if not len(paths):
    raise shards.DataError(f"{description} holds no usable images")
  shape = shards.shape_of(heights, widths)
  info = shards.SplitInfo(description, len(paths), class_names, shape,
                          shards.long_side_p95(heights, widths))

  def make_shard(index, count, examples=None):
    ids = (np.arange(len(paths)) if examples is None else examples)[
        index::count]
    decoded_bytes = len(ids) * (shape[0] * shape[1] * 3 if shape else np.inf)
    read = file_reads.read_fn(paths[ids], labels[ids],
                              file_reads.unreadable_list(indexes[0].stem))
    if decoded_bytes <= key.in_memory_max_bytes:
      return shards.Shard(
          info, len(ids), True,
          shards.decode_into_memory(read, len(ids), shape), ids, paths[ids])
    return shards.Shard(info, len(ids), False, read, ids, paths[ids])

  return shards.Split(info, make_shard, lambda: labels)
