"""What sits on the encoder: the VICReg expander and the evaluation head."""

from typing import Sequence

import haiku as hk
import jax

from vicreg_haiku.models import layers


class Expander(hk.Module):
  """The VICReg projector: (Linear + BN + ReLU) per hidden size, then Linear.

  `dims=(8192, 8192, 8192)` is the official `--mlp 8192-8192-8192`. The last
  Linear has no bias and nothing after it. The BatchNorms run in training mode
  while pretraining (`is_training=True`), as in the official code.
  """

  def __init__(self, dims: Sequence[int], name: str | None = None):
    super().__init__(name=name)
    if not dims:
      raise ValueError("Expander needs at least one output size")
    self._dims = tuple(dims)

  def __call__(self, x: jax.Array, is_training: bool) -> jax.Array:
    for index, size in enumerate(self._dims[:-1]):
      x = layers.TorchLinear(size, name=f"linear_{index}")(x)
      x = layers.BatchNorm(name=f"batch_norm_{index}")(x, is_training)
      x = jax.nn.relu(x)
    last = len(self._dims) - 1
    return layers.TorchLinear(self._dims[-1],
                              with_bias=False,
                              name=f"linear_{last}")(x)


class LinearHead(hk.Module):
  """The evaluation classifier, initialised as the official linear eval."""

  def __init__(self, num_classes: int, name: str | None = "head"):
    super().__init__(name=name)
    self._num_classes = num_classes

  def __call__(self, features: jax.Array) -> jax.Array:
    return hk.Linear(self._num_classes,
                     w_init=hk.initializers.RandomNormal(0.01))(features)
