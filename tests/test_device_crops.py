"""augment_on=device: each view's crop, resize and flip on the accelerator.

The device resize (pil_taps' coefficients, device_crops' products) against
the installed Pillow (>= 13) on crops that reach its edge cases: upscales
whose ratio puts bicubic's zero inside a band, both pass orders and their
tie, one-pixel sides, a downscale by 15, saturated pixels, flips, boxes at
the canvas's edges. Then the whole device path against the host path on
real-photo JPEGs of many sizes and modes, what an image larger than the
canvas costs, and the rotation on the device against TensorFlow's.
"""

import os

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import folder_fake

from vicreg_haiku.data import augmentations
from vicreg_haiku.data import canvas
from vicreg_haiku.data import datasets
from vicreg_haiku.data import device_augmentations
from vicreg_haiku.data import device_crops
from vicreg_haiku.data import pil_filters
from vicreg_haiku.data import pil_resize
from vicreg_haiku.data import pil_taps
from vicreg_haiku.utils import defaults

_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}

# (box height, box width, output side, canvas side): the box at the
# canvas's far corner.
CASES = [
    (24, 24, 56, 64),    # upscale: bicubic's zero at a band's first row
    (32, 32, 96, 64),    # a 32 px crop to 96 px: the same
    (100, 30, 40, 128),  # height down, width up: height first
    (91, 60, 30, 128),   # both down, the height by > 2x the width's pixels
    (90, 60, 30, 128),   # exactly 2x: width first (the tie)
    (60, 90, 40, 128),   # the width down more: width first
    (1, 7, 5, 64),       # one-pixel sides
    (9, 1, 4, 64),
    (37, 37, 37, 64),    # no resize
    (600, 50, 40, 600),  # a downscale by 15: 61 bicubic taps
]


def _images(side: int, rng: np.random.Generator):
  noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
  # Saturated checks: bicubic's lobes overshoot past 0 and 255.
  checks = (np.indices((side, side)).sum(0) % 2 * 255).astype(np.uint8)
  return np.stack([noise, np.repeat(checks[..., None], 3, axis=2),
                   folder_fake.photo(rng, side, side)])


def _device(images, top, left, h, w, size, interpolation, flip):
  """The device path on boxes (arrays [B]) -> uint8 [B, size, size, 3]."""
  side = images.shape[1]
  width = pil_taps.num_taps(side, size, interpolation)
  rows = pil_taps.taps(top, h, size, interpolation, width)
  cols = pil_taps.taps(left, w, size, interpolation, width)
  if flip:
    cols = tuple(x[:, ::-1] for x in cols)
  order = pil_filters.height_first(h, w, size, size)
  out = jax.jit(device_crops.crop_resize)(images, rows, cols, order)
  return np.asarray(out).astype(np.uint8)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("box_h, box_w, size, side", CASES)
def test_device_resize_is_pillows_to_the_bit(box_h, box_w, size, side,
                                             interpolation):
  rng = np.random.default_rng(box_h * 1000 + box_w)
  images = _images(side, rng)
  n = len(images)
  top, left = side - box_h, side - box_w  # touching the canvas's edges
  flip = box_w % 2 == 0
  got = _device(images, np.full(n, top), np.full(n, left), np.full(n, box_h),
                np.full(n, box_w), size, interpolation, flip)
  for image, view in zip(images, got):
    crop = Image.fromarray(image).crop((left, top, left + box_w,
                                        top + box_h))
    want = np.asarray(crop.resize((size, size), _FILTERS[interpolation]))
    np.testing.assert_array_equal(view, want[:, ::-1] if flip else want)


def _apply(row: np.ndarray, first, fixed) -> np.ndarray:
  """Taps on one row [W, 3] as Pillow sums them: integers, half up."""
  sums = np.zeros((len(first), 3), np.int64)
  for j, (start, weights) in enumerate(zip(first, fixed)):
    for k, weight in enumerate(weights):
      if weight:
        sums[j] += row[start + k].astype(np.int64) * weight
  return np.clip((sums + (1 << 21)) >> 22, 0, 255)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_fractional_boxes_are_pillows_resize_with_a_box(interpolation):
  """limit=...: Image.resize(box=...) of a whole image (what a reduced
  image's scaled box is resized with), float32 box coordinates as Pillow
  parses them, taps reading past the box up to the image's edges."""
  rng = np.random.default_rng(5)
  for _ in range(60):
    length, out = int(rng.integers(2, 60)), int(rng.integers(1, 40))
    low = float(np.float32(rng.uniform(0, length - 1)))
    high = float(np.float32(rng.uniform(low + 0.3, length)))
    first, fixed = pil_taps.taps(
        np.array([low]), np.array([high - low]), out, interpolation,
        pil_taps.num_taps(length, out, interpolation),
        limit=np.array([length]))
    row = rng.integers(0, 256, (1, length, 3), dtype=np.uint8)
    want = Image.fromarray(row).resize((out, 1), _FILTERS[interpolation],
                                       box=(low, 0, high, 1))
    np.testing.assert_array_equal(_apply(row[0], first[0], fixed[0]),
                                  np.asarray(want)[0])


def test_too_few_taps_are_refused():
  with pytest.raises(ValueError, match="taps do not cover"):
    pil_taps.taps(np.array([0]), np.array([100]), 10, "bicubic",
                  pil_taps.num_taps(50, 10, "bicubic"))


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
  """Real-photo JPEGs and PNGs of many sizes and modes (RGB, grayscale,
  CMYK, palette, RGBA, 16-bit), up to 120 px on the longer side."""
  root = str(tmp_path_factory.mktemp("photos"))
  sizes = [(120, 90), (33, 47), (75, 120), (8, 100), (64, 64), (17, 23),
           (100, 8), (96, 95)]
  folder_fake.write_images(os.path.join(root, "all"), 16,
                           np.random.default_rng(0), sizes=sizes)
  return root


def _config(root, augment_on, canvas_size=0):
  config = defaults.base_config()
  config.dataset.name = "folder"
  config.dataset.folder = root
  config.dataset.pretrain_split = "all"
  config.dataset.image_size = 24
  config.pretrain.batch_size = 8
  config.pretrain.augment_on = augment_on
  config.pretrain.canvas_size = canvas_size
  return config


def _batches(config, n=2):
  batches = datasets.pretrain_batches(config, start_step=1)
  return [next(batches) for _ in range(n)]


def _with(config, **pretrain):
  config = config.copy_and_resolve_references()
  config.pretrain.update(pretrain)
  return config


def _step_views(config, batch):
  recipe = config.augmentations[config.pretrain.augmentation]
  return device_augmentations.two_views(batch, recipe)


def test_device_views_are_the_host_views_on_jpegs(photo_folder):
  """With a canvas that holds every image, the step's views are the host
  path's, to float32 rounding (the same uint8 crops, the same colour)."""
  config = _config(photo_folder, "device", canvas_size=120)
  host = _batches(_with(config, augment_on="host"))
  for want, batch in zip(host, _batches(config)):
    assert batch["canvas"].shape == (8, 120, 120, 3)
    views = _step_views(config, batch)
    for key, view in zip(("view_a", "view_b"), views):
      np.testing.assert_allclose(np.asarray(view), want[key], atol=2e-5)


def test_the_canvas_is_the_95th_percentile_of_the_longer_sides(
    photo_folder):
  config = _config(photo_folder, "device")
  info = datasets.sources.split_info(config, "all")
  longer = sorted([120, 47, 120, 100, 64, 23, 100, 96] * 2)
  assert canvas.canvas_side(config, info) == longer[int(np.ceil(
      0.95 * (len(longer) - 1)))]
  assert canvas.canvas_side(_with(config, canvas_size=77), info) == 77
  # Photos of many megapixels: the canvas stops where the smallest crop
  # (scale 0.08) of it still has the output's pixels across, or at 512.
  large = datasets.shards.SplitInfo("phone photos", 10, None, None, 4000)
  config.dataset.image_size = 224
  assert canvas.canvas_side(config, large) == 792  # ceil(224 / 0.08 ** 0.5)
  config.dataset.image_size = 96
  assert canvas.canvas_side(config, large) == 512
  assert "512 px canvas (larger adds nothing at 96 px" in canvas.describe(
      config, large)


def _crops_of(batch):
  return np.asarray(device_crops.view_crops(batch))


def test_images_larger_than_the_canvas_are_reduced_at_a_measured_price(
    photo_folder):
  """A 60 px canvas: images up to 120 px are reduced on the host (JPEGs of
  120 px by libjpeg's DCT scaling, the others by Pillow's resize) and
  their boxes scaled; the views stay near Pillow's crop of the original
  (BENCHMARKS.md gives the figures on photos)."""
  exact = _config(photo_folder, "device", canvas_size=120)
  small = _with(exact, canvas_size=60)
  diffs = []
  for want, got in zip(_batches(exact, 4), _batches(small, 4)):
    assert got["canvas"].shape == (8, 60, 60, 3)
    diffs.append(np.abs(_crops_of(want) - _crops_of(got)))
  diffs = np.concatenate(diffs)
  # 4.3 levels on these halved images, most views upscaled; 6.5 when the
  # boxes were rounded to whole reduced pixels instead.
  assert 0 < diffs.mean() < 5


def test_rotation_on_device_is_tensorflows_within_a_level():
  rng = np.random.default_rng(3)
  images = np.stack([folder_fake.photo(rng, 24, 24) for _ in range(6)])
  images = images.astype(np.float32)
  degrees = np.array([-10, -3.3, 0, 0.5, 7.9, 10], np.float32)
  want = pil_resize.round_half_up(augmentations.rotate(
      tf.constant(images), tf.constant(degrees))).numpy()
  got = np.floor(np.clip(np.asarray(jax.jit(device_augmentations.rotate)(
      images, degrees)), 0, 255) + 0.5)
  assert np.abs(got - want).max() <= 1
  assert (got == want).mean() > 0.999


def test_device_batches_are_a_function_of_the_step(photo_folder):
  """What resume relies on: the batch at step k (canvas, coefficients,
  parameters) is the same whether the pipeline starts at 0 or at k, inside
  an epoch and across its boundary; a new epoch draws new crops."""
  config = _config(photo_folder, "device")
  steps = datasets.pretrain_steps_per_epoch(config)
  reference = list(zip(range(steps + 2), datasets.pretrain_batches(config)))
  for k in (1, steps, steps + 1):
    resumed = next(datasets.pretrain_batches(config, start_step=k))
    assert resumed.keys() == reference[k][1].keys()
    for key, value in resumed.items():
      np.testing.assert_array_equal(value, reference[k][1][key])
  assert not np.array_equal(reference[0][1]["rows"],
                            reference[steps][1]["rows"])
