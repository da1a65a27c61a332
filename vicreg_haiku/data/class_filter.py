"""config.dataset.classes: the classes a labelled split keeps."""

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from vicreg_haiku.data import shards

_BUILTIN_CLASS_LISTS = {"imagenet100": "imagenet100_classes.txt"}


def class_filter(classes: Optional[str]) -> tuple[str, ...]:
  """config.dataset.classes -> class names (empty: keep every class).

  "imagenet100" (the ImageNet-100 of CMC and solo-learn, shipped here), a
  file of names (whitespace-separated, "#" starts a comment line), or names
  joined by ",".
  """
  if not classes:
    return ()
  if classes in _BUILTIN_CLASS_LISTS:
    path = os.path.join(os.path.dirname(__file__),
                        _BUILTIN_CLASS_LISTS[classes])
  elif tf.io.gfile.exists(classes):
    path = classes
  else:
    return tuple(name.strip() for name in classes.split(",") if name.strip())
  with tf.io.gfile.GFile(path) as f:
    names = tuple(word for line in f.read().splitlines()
                  if not line.lstrip().startswith("#") for word in line.split())
  if not names:
    raise shards.DataError(
        f"config.dataset.classes={classes!r}: {path} names no "
        "classes")
  return names


def relabelling(class_names: tuple[str, ...], wanted: tuple[str, ...],
          description: str) -> np.ndarray:
  """old label -> new label (-1: dropped) for the class filter `wanted`."""
  missing = [name for name in wanted if name not in class_names]
  if missing:
    raise shards.DataError(
        f"config.dataset.classes names {len(missing)} class(es) absent from "
        f"{description}: {', '.join(missing[:5])}"
        f"{' ...' if len(missing) > 5 else ''}; fix the list or the split")
  new = {
      name: i for i, name in enumerate(sorted(wanted, key=class_names.index))
  }
  return np.array([new.get(name, -1) for name in class_names], np.int32)
