"""Vision Transformer encoders, laid out as timm's `vit_*_patch16_224`.

Pre-norm blocks (LayerNorm eps 1e-6, multi-head self-attention, a GELU MLP
of ratio 4), a class token and learned position embeddings; the features are
the final-normed class token (`pool="token"`, timm's default) or the mean of
the patch tokens normed by `fc_norm` (`pool="mean"`, timm's
`global_pool="avg"`). Module names follow timm's keys (models/vit_keys.py
maps them), and the init is timm's: Linear weights normal(0.02) (timm's
trunc_normal_ cuts at +-2 absolute, i.e. at 100 std, so it is a plain
normal), zero biases, position embeddings normal(0.02), the class token
normal(1e-6), the patch projection torch's Conv2d default.
"""

import math

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from vicreg_haiku.models import layers

POOLS = ("token", "mean")
_LINEAR_INIT = hk.initializers.RandomNormal(0.02)


class LayerNorm(hk.LayerNorm):
  """timm's LayerNorm (eps 1e-6); its own class so precision.py can give it
  a float32 policy, as BatchNorm's."""

  def __init__(self, name: str):
    super().__init__(axis=-1, create_scale=True, create_offset=True,
                     eps=1e-6, name=name)


def _linear(size: int, name: str) -> hk.Linear:
  return hk.Linear(size, w_init=_LINEAR_INIT, name=name)


def _cubic(distance: np.ndarray) -> np.ndarray:
  """The cubic convolution kernel with a = -0.5 (Keys; Pillow's), which
  torch's bicubic interpolation uses when antialias=True (its a = -0.75 is
  the antialias=False path only; tests/test_vit.py checks it against timm)."""
  a = -0.5
  d = np.abs(distance)
  near = ((a + 2) * d - (a + 3)) * d * d + 1
  far = (((d - 5) * d + 8) * d - 4) * a
  return np.where(d < 1, near, np.where(d < 2, far, 0.0))


def resample_weights(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in]: torch's antialiased bicubic interpolation
  (align_corners=False) along one axis, as float64 coefficients.

  Output j samples around input (j + 0.5) * scale - 0.5; when shrinking the
  kernel widens by the scale (antialiasing); taps outside are dropped and
  the rest renormalised.
  """
  scale = size_in / size_out
  support = max(scale, 1.0)
  centre = (np.arange(size_out)[:, None] + 0.5) * scale
  taps = np.arange(size_in)[None, :] + 0.5
  weights = _cubic((taps - centre) / support)
  return weights / weights.sum(axis=1, keepdims=True)


def resample_pos_embed(pos_embed: jax.Array, grid: tuple[int, int]
                       ) -> jax.Array:
  """timm's resample_abs_pos_embed (bicubic, antialias) of [1, 1 + h*w, D]
  position embeddings (the class token's first, kept as is) to `grid`."""
  old = math.isqrt(pos_embed.shape[1] - 1)
  if (old, old) == tuple(grid):
    return pos_embed
  rows = jnp.asarray(resample_weights(old, grid[0]), jnp.float32)
  cols = jnp.asarray(resample_weights(old, grid[1]), jnp.float32)
  patches = pos_embed[0, 1:].reshape(old, old, -1).astype(jnp.float32)
  highest = jax.lax.Precision.HIGHEST
  patches = jnp.einsum("ij,jkd->ikd", rows, patches, precision=highest)
  patches = jnp.einsum("lk,ikd->ild", cols, patches, precision=highest)
  patches = patches.reshape(1, grid[0] * grid[1], -1).astype(pos_embed.dtype)
  return jnp.concatenate([pos_embed[:, :1], patches], axis=1)


def drop_path(x: jax.Array, rate: float, is_training: bool) -> jax.Array:
  """timm's DropPath: each example's branch dropped with probability `rate`
  and the kept ones scaled by 1 / (1 - rate); the key is Haiku's, so the
  caller passes one to `apply` (the step folds it from seed and step)."""
  if not is_training or rate == 0.0:
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(hk.next_rng_key(), keep,
                              (x.shape[0],) + (1,) * (x.ndim - 1))
  return x * (mask / keep).astype(x.dtype)


def _attention(x: jax.Array, num_heads: int) -> jax.Array:
  """timm's Attention: one qkv Linear, scaled dot-product attention per head
  (jax.nn.dot_product_attention: the fused kernels on GPU and TPU), proj."""
  batch, tokens, width = x.shape
  qkv = _linear(3 * width, "attn_qkv")(x)
  # timm lays the qkv output out as (3, heads, head_dim).
  qkv = qkv.reshape(batch, tokens, 3, num_heads, width // num_heads)
  out = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
  return _linear(width, "attn_proj")(out.reshape(batch, tokens, width))


class _Block(hk.Module):
  """x + attn(norm1(x)), then x + mlp(norm2(x)), each branch drop-pathed."""

  def __init__(self, num_heads: int, drop_path_rate: float, name: str):
    super().__init__(name=name)
    self._num_heads = num_heads
    self._drop_path = drop_path_rate

  def __call__(self, x: jax.Array, is_training: bool) -> jax.Array:
    width = x.shape[-1]
    y = _attention(LayerNorm("norm1")(x), self._num_heads)
    x = x + drop_path(y, self._drop_path, is_training)
    y = _linear(4 * width, "mlp_fc1")(LayerNorm("norm2")(x))
    y = _linear(width, "mlp_fc2")(jax.nn.gelu(y, approximate=False))
    return x + drop_path(y, self._drop_path, is_training)


class _PatchEmbed(hk.Module):
  """timm's PatchEmbed: [B, H, W, C] -> ([B, h*w, width], (h, w)), the
  stride-patch convolution as a product of flattened (row, column, channel)
  patches and the HWIO kernel; torch's Conv2d default init."""

  def __init__(self, patch_size: int, width: int):
    super().__init__(name="patch_embed")
    self._patch = patch_size
    self._width = width

  def __call__(self, images: jax.Array
               ) -> tuple[jax.Array, tuple[int, int]]:
    p = self._patch
    batch, h, w = images.shape[0], images.shape[1] // p, images.shape[2] // p
    channels = images.shape[-1]
    patches = images[:, :h * p, :w * p].reshape(batch, h, p, w, p, channels)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(batch, h * w, -1)
    fan_in = p * p * channels
    bound = 1.0 / math.sqrt(fan_in)
    uniform = hk.initializers.RandomUniform(-bound, bound)
    kernel = hk.get_parameter("w", (p, p, channels, self._width),
                              images.dtype, init=uniform)
    bias = hk.get_parameter("b", (self._width,), images.dtype, init=uniform)
    return patches @ kernel.reshape(fan_in, self._width) + bias, (h, w)


class VisionTransformer(hk.Module):
  """A timm ViT without its head: images [B, H, W, 3] -> [B, width].

  `image_size` sets the position embeddings' grid (image_size // patch_size
  squared); images of another size run with them resampled as timm's
  resample_abs_pos_embed does. A size that is not a multiple of the patch
  loses its last rows and columns, as torch's strided patch convolution.
  Drop-path rates rise linearly from 0 to `drop_path` over the blocks.
  """

  def __init__(self, width: int, depth: int, num_heads: int, *,
               patch_size: int = 16, image_size: int = 224,
               pool: str = "token", drop_path: float = 0.0,
               name: str | None = None):
    super().__init__(name=name)
    if pool not in POOLS:
      raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    self._width = width
    self._depth = depth
    self._num_heads = num_heads
    self._patch = patch_size
    self._grid = image_size // patch_size
    self._pool = pool
    self._drop_path = drop_path

  def __call__(self, images: jax.Array, is_training: bool) -> jax.Array:
    x, grid = _PatchEmbed(self._patch, self._width)(images)
    cls_token = hk.get_parameter("cls_token", (1, 1, self._width), x.dtype,
                                 init=hk.initializers.RandomNormal(1e-6))
    pos_embed = hk.get_parameter(
        "pos_embed", (1, 1 + self._grid**2, self._width), x.dtype,
        init=_LINEAR_INIT)
    cls = jnp.broadcast_to(cls_token, (x.shape[0], 1, self._width))
    x = jnp.concatenate([cls, x], axis=1) + resample_pos_embed(pos_embed,
                                                               grid)
    rates = np.linspace(0.0, self._drop_path, self._depth)
    for index in range(self._depth):
      # Each block's input gradient in memory: else XLA:CPU recomputes the
      # later blocks' share of it in each of its consumers.
      x = layers.cotangent_in_memory(x, pos_embed)
      x = _Block(self._num_heads, float(rates[index]), f"block_{index}")(
          x, is_training)
    if self._pool == "token":
      return LayerNorm("norm")(x)[:, 0]
    return LayerNorm("fc_norm")(jnp.mean(x[:, 1:], axis=1))


def _sized(width: int, num_heads: int):

  def build(*, depth: int = 12, patch_size: int = 16, image_size: int = 224,
            pool: str = "token", drop_path: float = 0.0,
            name: str | None = None) -> VisionTransformer:
    return VisionTransformer(width, depth, num_heads, patch_size=patch_size,
                             image_size=image_size, pool=pool,
                             drop_path=drop_path, name=name)

  return build


# timm's vit_{tiny,small,base}_patch16_224: depth 12, MLP ratio 4.
ViTTiny = _sized(192, 3)
ViTSmall = _sized(384, 6)
ViTBase = _sized(768, 12)
