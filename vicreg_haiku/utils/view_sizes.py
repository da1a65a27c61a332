"""The pixel sizes the input pipeline and the models must agree on: a ViT's
patch, and the side of the local views (multi-crop) that it cuts into
whole patches. Here, below both layers, because data/ and models/ do not
import each other."""

import ml_collections

# config.model.encoder's Vision Transformers (models/transforms.VITS).
VIT_ENCODERS = ("vit_tiny", "vit_small", "vit_base")

# Patch sizes a ViT picks by itself, the largest first, and the fewest
# patches along a side it accepts (timm's ViTs at 224 px / 16 have 14).
_AUTO_PATCHES = (16, 8, 4, 2)
_MIN_GRID = 8

# The local views' side at 224 px global views (LeJEPA's, DINO's and
# VICRegL's 96 px).
_LOCAL_AT_224 = 96


def is_vit(config: ml_collections.ConfigDict) -> bool:
  return config.model.encoder in VIT_ENCODERS


def patch_size(config: ml_collections.ConfigDict) -> int | None:
  """config.model.patch_size, or where it is None the largest of 16, 8, 4,
  2 that cuts dataset.image_size into at least 8 x 8 whole patches (224 px:
  16, 96: 8, 32: 4, 16: 2); None if none does."""
  if config.model.patch_size is not None:
    return config.model.patch_size
  size = config.dataset.image_size
  return next((p for p in _AUTO_PATCHES
               if size % p == 0 and size // p >= _MIN_GRID), None)


def local_size(config: ml_collections.ConfigDict) -> int:
  """The local views' side: config.pretrain.local_size, or where it is None
  round(image_size * 96 / 224) (at least 1), for a ViT rounded down to a
  multiple of its patch size (at least one patch): 224 px -> 96, 96 -> 41
  (ViT patch 8: 40), 32 -> 14 (patch 4: 12), 16 -> 7 (patch 2: 6)."""
  if config.pretrain.local_size is not None:
    return config.pretrain.local_size
  size = max(1, round(config.dataset.image_size * _LOCAL_AT_224 / 224))
  patch = patch_size(config) if is_vit(config) else None
  return max(patch, size // patch * patch) if patch else size
