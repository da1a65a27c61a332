"""ResNet encoders, laid out as torchvision's.

Padding is explicit and symmetric (7x7/2 pad 3, 3x3 pad 1, max-pool 3/2 pad 1),
as in torchvision, not SAME: SAME pads stride-2 layers asymmetrically, so
ported torchvision or official VICReg weights would give different outputs.
The last BN of every residual block is zero-initialised (the official
`zero_init_residual=True`).
"""

from typing import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from vicreg_haiku.models import layers


class _BasicBlock(hk.Module):
  expansion = 1

  def __init__(self, channels: int, stride: int, name: str):
    super().__init__(name=name)
    self._channels = channels
    self._stride = stride

  def __call__(self, x, is_training):
    shortcut = x
    if self._stride != 1 or x.shape[-1] != self._channels:
      shortcut = layers.Conv(self._channels, 1, self._stride,
                             "shortcut_conv")(x)
      shortcut = layers.BatchNorm(name="shortcut_batch_norm")(shortcut,
                                                              is_training)
    y = layers.Conv(self._channels, 3, self._stride, "conv_0")(x)
    y = jax.nn.relu(layers.BatchNorm(name="batch_norm_0")(y, is_training))
    y = layers.Conv(self._channels, 3, 1, "conv_1")(y)
    y = layers.BatchNorm(zero_init=True, name="batch_norm_1")(y, is_training)
    return jax.nn.relu(y + shortcut)


class _Bottleneck(hk.Module):
  """torchvision's v1.5 bottleneck: the stride sits on the 3x3 conv."""
  expansion = 4

  def __init__(self, channels: int, stride: int, name: str):
    super().__init__(name=name)
    self._channels = channels
    self._stride = stride

  def __call__(self, x, is_training):
    out_channels = self._channels * self.expansion
    shortcut = x
    if self._stride != 1 or x.shape[-1] != out_channels:
      shortcut = layers.Conv(out_channels, 1, self._stride, "shortcut_conv")(x)
      shortcut = layers.BatchNorm(name="shortcut_batch_norm")(shortcut,
                                                              is_training)
    y = layers.Conv(self._channels, 1, 1, "conv_0")(x)
    y = jax.nn.relu(layers.BatchNorm(name="batch_norm_0")(y, is_training))
    y = layers.Conv(self._channels, 3, self._stride, "conv_1")(y)
    y = jax.nn.relu(layers.BatchNorm(name="batch_norm_1")(y, is_training))
    y = layers.Conv(out_channels, 1, 1, "conv_2")(y)
    y = layers.BatchNorm(zero_init=True, name="batch_norm_2")(y, is_training)
    return jax.nn.relu(y + shortcut)


class _ResNet(hk.Module):
  """A torchvision ResNet without its classifier: images -> pooled features."""

  def __init__(self, block, blocks_per_stage: Sequence[int], stem: str,
               width: int, name: str | None):
    super().__init__(name=name)
    if stem not in ("imagenet", "cifar"):
      raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
    self._block = block
    self._blocks_per_stage = blocks_per_stage
    self._stem = stem
    self._width = width

  @property
  def feature_dim(self) -> int:
    return self._width * 8 * self._block.expansion

  def __call__(self, images: jax.Array, is_training: bool) -> jax.Array:
    if self._stem == "imagenet":
      x = layers.Conv(self._width, 7, 2, "stem_conv")(images)
    else:  # CIFAR variant: a 3x3 stride-1 conv and no max-pool.
      x = layers.Conv(self._width, 3, 1, "stem_conv")(images)
    x = jax.nn.relu(layers.BatchNorm(name="stem_batch_norm")(x, is_training))
    if self._stem == "imagenet":
      x = layers.max_pool_3x3_s2(x)
    for stage, num_blocks in enumerate(self._blocks_per_stage):
      channels = self._width * 2**stage
      for index in range(num_blocks):
        stride = 2 if stage > 0 and index == 0 else 1
        x = self._block(channels, stride, f"stage_{stage}_block_{index}")(
            x, is_training)
    return jnp.mean(x, axis=(1, 2))


class ResNet18(_ResNet):

  def __init__(self, stem: str = "imagenet", width: int = 64,
               name: str | None = None):
    super().__init__(_BasicBlock, (2, 2, 2, 2), stem, width, name)


class ResNet50(_ResNet):

  def __init__(self, stem: str = "imagenet", width: int = 64,
               name: str | None = None):
    super().__init__(_Bottleneck, (3, 4, 6, 3), stem, width, name)
