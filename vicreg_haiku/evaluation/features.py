"""An encoder's features of every example of a split.

Features come from the encoder with BatchNorm in inference mode, on the eval
pipeline (no randomness, every example once, padding masked out).
"""

from typing import Iterator

import jax
import ml_collections
import numpy as np

from vicreg_haiku.data import datasets
from vicreg_haiku.models import transforms
from vicreg_haiku.training import parallel


def stream(config: ml_collections.ConfigDict, apply_fn, split: str, mesh,
           examples: np.ndarray | None = None
           ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """(apply_fn(images), labels, positions in the shard) a batch at a time,
  host NumPy, padding dropped: one pass over `split` (or its `examples`,
  datasets.eval_batches), so host memory holds a batch, not the split.

  `apply_fn` maps a global image batch to a global [B, ...] array.
  """
  for batch in datasets.eval_batches(config, split,
                                     batch_size=config.eval_batch_size,
                                     examples=examples):
    global_batch = parallel.global_batch(batch, mesh)
    out, label, index, mask = parallel.to_host(
        (apply_fn(global_batch["image"]), global_batch["label"],
         global_batch["index"], global_batch["mask"]))
    yield np.asarray(out)[mask], label[mask], index[mask]


def extract(config: ml_collections.ConfigDict, apply_fn, split: str, mesh,
            limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(apply_fn(images) for every example of `split`, labels), host NumPy,
  float32.

  `apply_fn` maps a global image batch to a global [B, F] array.
  """
  outputs, labels = [], []
  seen = 0
  for out, label, _ in stream(config, apply_fn, split, mesh):
    outputs.append(np.asarray(out, np.float32))
    labels.append(label)
    seen += len(label)
    if limit is not None and seen >= limit:
      break
  features = np.concatenate(outputs)[:limit]
  return features, np.concatenate(labels)[:limit]


def encoder_features(config: ml_collections.ConfigDict):
  """A jitted (params, net_state) -> (images -> features) factory.

  Only the encoder's part of the trees goes in, so a pretraining state, a
  restored encoder and a random init (placed alike) run one program.
  """
  apply = jax.jit(transforms.feature_model(config).apply)

  def bind(params, net_state):
    params, net_state = transforms.encoder_part(
        params), transforms.encoder_part(net_state)
    return lambda images: apply(params, net_state, None, images)[0]

  return bind
