"""Multi-crop: local views beside the two global ones, on both augment
paths (config.pretrain.local_views, local_size, local_crop_scale).

The host path's local views against Pillow (the installed one and
pil_reference's) on the examples the pipeline picked; the global views
unmoved by local ones (their draws are a stream of their own); the device
path's local views against the host's; determinism and resume; the
config's derivation and checks.
"""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import folder_fake
import pil_reference

from vicreg_haiku import config_checks
from vicreg_haiku.data import augmentation_constants
from vicreg_haiku.data import augmentations
from vicreg_haiku.data import datasets
from vicreg_haiku.data import device_augmentations
from vicreg_haiku.data import photometric
from vicreg_haiku.models import transforms
from vicreg_haiku.utils import defaults
from vicreg_haiku.utils import errors
from vicreg_haiku.utils import view_sizes

_BATCH = 8
_LOCAL = 3


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """RGB JPEGs and PNGs of several sizes, up to 90 px."""
  root = str(tmp_path_factory.mktemp("photos"))
  folder_fake.write_images(
      os.path.join(root, "all"), 16, np.random.default_rng(1),
      sizes=[(90, 70), (33, 47), (64, 64), (20, 80)],
      kinds=((".JPEG", "RGB", "JPEG"), (".png", "RGB", "PNG")))
  return root


def _config(root, augment_on="host", local_views=_LOCAL, **pretrain):
  config = defaults.base_config()
  config.dataset.name = "folder"
  config.dataset.folder = root
  config.dataset.pretrain_split = "all"
  config.dataset.image_size = 24
  config.pretrain.batch_size = _BATCH
  config.pretrain.augment_on = augment_on
  config.pretrain.local_views = local_views
  config.pretrain.update(pretrain)
  return config


def _batches(config, start_step=1, n=2):
  batches = datasets.pretrain_batches(config, start_step=start_step)
  return [next(batches) for _ in range(n)]


@pytest.mark.parametrize("image_size, vit, patch, want", [
    (224, False, None, 96), (224, True, None, 96), (96, False, None, 41),
    (96, True, None, 40), (32, False, None, 14), (32, True, None, 12),
    (16, False, None, 7), (16, True, None, 6), (32, True, 8, 8),
    (2, False, None, 1)])
def test_local_size_is_96_at_224_in_whole_patches(image_size, vit, patch,
                                                   want):
  config = defaults.base_config()
  config.dataset.image_size = image_size
  config.model.encoder = "vit_small" if vit else "resnet18"
  config.model.patch_size = patch
  assert view_sizes.local_size(config) == want
  config.pretrain.local_size = 5
  assert view_sizes.local_size(config) == 5


def test_the_vits_are_the_models():
  assert view_sizes.VIT_ENCODERS == tuple(transforms.VITS)


@pytest.mark.parametrize("key, value, message", [
    ("pretrain.local_views", -1, "local_views=-1 must be non-negative"),
    ("pretrain.local_size", 0, r"local_size=0 must lie in \[1, 32\]"),
    ("pretrain.local_size", 33, r"local_size=33 must lie in \[1, 32\]"),
    ("pretrain.local_crop_scale", (0.3, 0.05), "must be \\(low, high\\)"),
    ("pretrain.local_crop_scale", (0.3,), "must be \\(low, high\\)"),
    ("augmentations.vicreg.local_blur_prob", 1.5, "lie in \\[0, 1\\]"),
    ("model.encoder", "vit_tiny",
     "local_size=14 is not a multiple of config.model.patch_size=4.*e.g. 12"),
])
def test_bad_local_settings_are_one_line_errors(key, value, message):
  config = defaults.base_config()
  config.dataset.image_size = 32
  config.pretrain.local_views = 2
  if key == "model.encoder":
    config.pretrain.local_size = 14
  section, field = key.rsplit(".", 1)
  node = config
  for part in section.split("."):
    node = node[part]
  node[field] = value
  with pytest.raises(errors.ConfigError, match=message) as raised:
    config_checks.validate(config, 1)
  assert "\n" not in str(raised.value)


def test_default_local_settings_pass_the_checks():
  config = defaults.base_config()
  config_checks.validate(config, 1)
  config.pretrain.local_views = 6
  config.model.encoder = "vit_tiny"
  config.dataset.image_size = 32
  config_checks.validate(config, 1)


def _plain(config):
  """A recipe whose photometric half is the identity on [0, 1] (no jitter,
  grayscale, blur or solarisation, mean 0, std 1): views are crops / 255."""
  recipe = config.augmentations[config.pretrain.augmentation]
  recipe.update(jitter_prob=0.0, grayscale_prob=0.0, local_blur_prob=0.0,
                mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
  return config


def test_host_local_views_are_pillows_crops(photos):
  """Each local view of the batch at step 0 is torchvision's
  RandomResizedCrop(local_size, local_crop_scale) + flip of its example on
  the PIL image, to the bit (the installed Pillow and pil_reference), from
  the local views' own keyed draws."""
  config = _plain(_config(photos, local_size=10,
                          local_crop_scale=(0.05, 0.3)))
  recipe = config.augmentations.vicreg
  batch = next(datasets.pretrain_batches(config))
  assert batch["local_views"].shape == (_BATCH, _LOCAL, 10, 10, 3)
  assert batch["local_views"].dtype == np.float32
  shard = datasets.sources.shard(config, "all", 0, 1)
  local_stream = datasets._LOCAL_VIEWS  # pylint: disable=protected-access
  order = datasets._example_order(  # pylint: disable=protected-access
      shard.size, _BATCH, datasets.pretrain_steps_per_epoch(config), 0,
      config.seed)
  for b, (epoch, i) in enumerate(order.take(3)):
    example = int(shard.global_ids[int(i)])
    u = datasets._draws((config.seed, local_stream), epoch, example,  # pylint: disable=protected-access
                        [_LOCAL])
    pixels = np.asarray(Image.open(shard.names[int(i)]).convert("RGB"))
    tops, lefts, hs, ws = (t.numpy() for t in augmentations.crop_boxes(
        u, *pixels.shape[:2], (0.05, 0.3), recipe.crop_ratio))
    flips = augmentation_constants.take(u.numpy(), "flip")[:, 0] < 0.5
    for v in range(_LOCAL):
      crop = pixels[tops[v]:tops[v] + hs[v], lefts[v]:lefts[v] + ws[v]]
      assert hs[v] * ws[v] <= 0.3 * pixels.shape[0] * pixels.shape[1] + 1
      got = np.round(batch["local_views"][b, v] * 255).astype(np.uint8)
      installed = np.asarray(Image.fromarray(crop).resize((10, 10),
                                                          Image.BICUBIC))
      for want in (installed, pil_reference.resize(crop, 10, 10, "bicubic")):
        np.testing.assert_array_equal(
            got, want[:, ::-1] if flips[v] else want, err_msg=f"{b}, {v}")


def test_local_views_leave_the_global_views_as_they_were(photos):
  """local_views=0 is today's batch; local views draw from a stream of
  their own, so adding them moves no global view; determinism and resume
  hold for the local views too."""
  config = _config(photos)
  without = _batches(_config(photos, local_views=0), start_step=0, n=3)
  with_local = _batches(config, start_step=0, n=3)
  for plain, multi in zip(without, with_local):
    assert sorted(plain) == ["view_a", "view_b"]
    assert sorted(multi) == ["local_views", "view_a", "view_b"]
    for key in plain:
      np.testing.assert_array_equal(multi[key], plain[key])
    local = multi["local_views"]
    assert local.shape == (_BATCH, _LOCAL, 10, 10, 3)
    assert np.isfinite(local).all() and np.abs(local).max() < 3
    assert not np.allclose(local[:, 0], local[:, 1])
  resumed = next(datasets.pretrain_batches(config, start_step=2))
  np.testing.assert_array_equal(resumed["local_views"],
                                with_local[2]["local_views"])


def test_local_photometric_recipe(photos):
  """The local views' photometric parameters: the recipe's jitter and
  grayscale, local_blur_prob and local_solarize_prob (DINO's 0.5 and 0);
  the TF and JAX photometric halves agree on them."""
  recipe = defaults.vicreg_views()
  n = 4000
  u = augmentations.draw(tf.constant([7, 8]), [n // 4, 4])
  params = {k: v.numpy() for k, v in photometric.view_params(
      u, recipe, local=True).items()}
  assert params["blur_sigma"].shape == (n // 4, 4)
  assert abs((params["blur_sigma"] > 0).mean() - 0.5) < 0.05
  assert not params["solarize"].any()
  assert abs(params["jitter"].mean() - 0.8) < 0.05
  crops = tf.constant(np.random.default_rng(2).integers(
      0, 256, (16, 4, 8, 8, 3), dtype=np.uint8))
  host = photometric.finish_local_views(crops, u[:16], recipe).numpy()
  flat = {k: v[:16].reshape(64, *v.shape[2:]) for k, v in params.items()}
  device = device_augmentations.photometric(
      crops.numpy().reshape(64, 8, 8, 3) / np.float32(255), flat, recipe,
      augmentation_constants.LOCAL)
  np.testing.assert_allclose(np.asarray(device).reshape(host.shape), host,
                             atol=2e-5)


def test_device_local_views_are_the_host_local_views(photos):
  """With a canvas that holds every image, the step's local views are the
  host path's, to float32 rounding, made from the same canvas as the
  global views; a rotating recipe rotates them alike. Without local views
  the device batch is the one with them less its "local_" keys."""
  config = _config(photos, "device", canvas_size=90)
  config.augmentations.vicreg.rotation_degrees = 10.0
  host = _batches(_with(config, augment_on="host"))
  device = _batches(config)
  plain = _batches(_with(config, local_views=0))
  for want, batch, without in zip(host, device, plain):
    assert batch["canvas"].shape == (_BATCH, 90, 90, 3)
    assert batch["local_rows"].shape[:3] == (_BATCH, _LOCAL, 10)
    assert batch["local_rotation"].shape == (_BATCH, _LOCAL)
    recipe = config.augmentations.vicreg
    local = device_augmentations.local_views(batch, recipe)
    np.testing.assert_allclose(np.asarray(local), want["local_views"],
                               atol=2e-5)
    views = device_augmentations.two_views(batch, recipe)
    for key, view in zip(("view_a", "view_b"), views):
      np.testing.assert_allclose(np.asarray(view), want[key], atol=2e-5)
    prefix = device_augmentations.LOCAL_PREFIX
    assert sorted(without) == sorted(k for k in batch
                                     if not k.startswith(prefix))
    for key, value in without.items():
      np.testing.assert_array_equal(batch[key], value, err_msg=key)


def _with(config, **pretrain):
  config = config.copy_and_resolve_references()
  config.pretrain.update(pretrain)
  return config
