"""What every source hands the pipeline: a split's facts and a process's shard."""

import dataclasses
from typing import Callable, Optional

import ml_collections
import numpy as np
import tensorflow as tf

from vicreg_haiku.data import decoding

# TF only feeds the host; the accelerators belong to JAX.
tf.config.set_visible_devices([], "GPU")


Config = ml_collections.ConfigDict
ReadFn = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


class DataError(RuntimeError):
  """Data that is missing, unprepared or malformed (one-line message)."""


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """Facts about a whole split, the same on every process."""
  description: str  # for messages, e.g. "folder /data/imagenet/train"
  num_examples: int
  class_names: Optional[tuple[str, ...]]  # None: unlabelled
  image_shape: Optional[tuple[int, int]]  # (H, W) shared by every image
  # The 95th percentile of the images' longer sides; None: unknown. The
  # device path's canvas (canvas.canvas_side).
  long_side_p95: Optional[int] = None

  @property
  def labelled(self) -> bool:
    return self.class_names is not None


@dataclasses.dataclass(frozen=True)
class Shard:
  """This process's examples of a split, read by local index in tf.data.

  read(i) -> (image, label): a uint8 [H, W, 3] image when `decoded`, else a
  scalar string of encoded bytes (decoding.decode_rgb), and an int32 label
  (-1 for an unlabelled split). global_ids[i] is the example's index in the
  whole split: the augmentation draws are keyed by it, so an example's views
  do not depend on how many processes share the split. names[i] (folders:
  the file's path) says where the example came from; None: global_ids do.
  """
  info: SplitInfo
  size: int
  decoded: bool
  read: ReadFn
  global_ids: np.ndarray
  names: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class SourceKey:
  """The config fields that decide what a split holds (hashable, cached)."""
  name: str
  data_dir: Optional[str]
  manual_dir: Optional[str]
  folder: Optional[str]
  index_dir: Optional[str]
  classes: tuple[str, ...]
  in_memory_max_bytes: float


@dataclasses.dataclass(frozen=True)
class Split:
  """A source's split: its facts, its shards, its labels.

  make_shard(index, count, examples): a process's Shard of the examples
  (indices into the split, sorted; None: all). labels(): every example's
  label, in the split's order (reading them may take a pass over the data).
  """
  info: SplitInfo
  make_shard: Callable[..., Shard]
  labels: Callable[[], np.ndarray]


def shape_of(heights: np.ndarray, widths: np.ndarray
              ) -> Optional[tuple[int, int]]:
  if len(heights) and (heights == heights[0]).all() and (
      widths == widths[0]).all():
    return int(heights[0]), int(widths[0])
  return None


def long_side_p95(heights: np.ndarray, widths: np.ndarray) -> int:
  return int(np.percentile(np.maximum(heights, widths), 95, method="higher"))


def contiguous_piece(examples: Optional[np.ndarray], n: int, index: int,
                      count: int) -> np.ndarray:
  """Process `index`'s piece of the examples (all n when None)."""
  examples = np.arange(n) if examples is None else examples
  lo = len(examples) * index // count
  return examples[lo:len(examples) * (index + 1) // count]


def in_memory_read(images: np.ndarray, labels: np.ndarray) -> ReadFn:
  """Reads from arrays held in host memory, held once: uint8 images
  [N, H, W, 3] or encoded bytes [N] (an object array).

  tf.data reads an example at a time from the array (a py_function: a
  view, copied to one example's tensor). Copied into a tf.Variable they
  were held twice, and updating a variable in place copies it once more
  (peak RSS 3.3x the decoded bytes, then 2.4x; now 1.03x,
  benchmarks/input_pipeline.py, BENCHMARKS.md).
  """
  encoded = images.dtype == object
  label_table = tf.constant(labels, tf.int32)

  def read(i):
    image = tf.py_function(lambda j: images[int(j)], [i],
                           tf.string if encoded else tf.uint8)
    image.set_shape([] if encoded else images.shape[1:])
    return image, tf.gather(label_table, i)

  return read


def check_images(images: np.ndarray, where: str) -> None:
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise DataError(f"Images from {where} are {images.dtype}{images.shape}; "
                    "the pipeline needs uint8 [N, H, W, 3]: check the source.")


def decode_into_memory(read: ReadFn, n: int, shape: tuple[int, int]
                       ) -> ReadFn:
  """Reads and decodes n examples of one image shape, in parallel, into
  one uint8 NumPy array in host memory; returns in_memory_read of it."""
  images = np.empty((n, *shape, 3), np.uint8)
  labels = np.empty((n,), np.int32)

  def decode(i):
    encoded, label = read(i)
    return decoding.decode_rgb(encoded), label

  ds = tf.data.Dataset.range(n).map(decode,
                                    num_parallel_calls=tf.data.AUTOTUNE)
  offset = 0
  # Small batches: tf.data's buffers of decoded images stay small beside
  # the array (256 added ~0.3x of a 3,000-photo folder's bytes).
  for image_batch, label_batch in ds.batch(64).as_numpy_iterator():
    end = offset + len(label_batch)
    images[offset:end], labels[offset:end] = image_batch, label_batch
    offset = end
  return in_memory_read(images, labels)
