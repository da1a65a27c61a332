"""Folders of images: the index, bad files, splits, pipelines, refusals.

The folders hold real photographs (crops of scikit-learn's sample images) in
the modes and formats a real collection has; references are PIL's, which
torchvision's ImageFolder loader and transforms run on.
"""

import glob
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import folder_fake
import pil_reference

from vicreg_haiku.data import augmentations
from vicreg_haiku.data import class_filter
from vicreg_haiku.data import datasets
from vicreg_haiku.data import decoding
from vicreg_haiku.data import folder
from vicreg_haiku.data import folder_index
from vicreg_haiku.data import shards
from vicreg_haiku.data import sources
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import defaults


def _config(root, **dataset):
  config = defaults.base_config()
  config.dataset.update(dict(dict(name="folder", folder=str(root),
                                  image_size=16, pretrain_split="train",
                                  train_split="train", test_split="val"),
                             **dataset))
  config.pretrain.batch_size = 8
  return config


def _clear_caches():
  for cached in (sources._split, sources._subset, sources._shard,
                 folder._folder_index):  # pylint: disable=protected-access
    cached.cache_clear()


@pytest.fixture(autouse=True)
def fresh_sources():
  _clear_caches()
  yield
  _clear_caches()


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
  """ROOT/{train,val}/<wnid>/ of mixed kinds and sizes, plus bad files."""
  root = tmp_path_factory.mktemp("imagenet_like")
  layout = folder_fake.image_folder(str(root))
  bad = folder_fake.bad_files(str(root / "train" / folder_fake.WNIDS[1]),
                              np.random.default_rng(5))
  (root / "train" / ".DS_Store").write_text("x")
  (root / "train" / folder_fake.WNIDS[0] / "notes.txt").write_text("x")
  hidden = root / "train" / folder_fake.WNIDS[0] / ".thumbs"
  folder_fake.write_images(str(hidden), 1, np.random.default_rng(6))
  return root, layout, bad


def _pil_rgb(path):
  """The reference pixels: PIL's decode, as torchvision's loader; 16-bit
  PNGs scaled to 8 bits (PIL's convert("RGB") clips them instead)."""
  image = Image.open(path)
  if image.mode == "I;16":
    gray = (np.asarray(image, np.uint32) >> 8).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  return np.asarray(image.convert("RGB"))


def test_index_labels_kinds_and_bad_files(imagenet_like, capsys):
  root, layout, bad = imagenet_like
  index = folder_index.build(str(root), "train", str(root / "index"))
  # The four bad files: one warning, the list with reasons beside the index.
  out = capsys.readouterr().out
  warnings = [l for l in out.splitlines() if l.startswith("WARNING:")]
  assert len(warnings) == 1 and warnings[0].count(".jpg") >= 4
  assert "4 of" in warnings[0]
  listed = [f for f in os.listdir(root / "index") if f.endswith(".bad.txt")]
  lines = (root / "index" / listed[0]).read_text().splitlines()
  assert sorted(l.split("\t")[0] for l in lines) == sorted(bad)
  assert any("zero bytes" in l for l in lines)
  expected = sorted(layout["train"])
  assert index.class_names == tuple(sorted(folder_fake.WNIDS))
  assert index.full_paths() == [p for p, _ in expected]
  np.testing.assert_array_equal(index.labels, [l for _, l in expected])
  for path, height, width in zip(index.full_paths(), index.heights,
                                 index.widths):
    pixels = _pil_rgb(path)
    assert (height, width) == pixels.shape[:2], path
  # Every kind (gray, CMYK, RGBA, palette, 16-bit, PNG named .JPEG) decodes
  # to PIL's pixels exactly.
  shard = sources.shard(_config(root, index_dir=str(root / "index"),
                                in_memory_max_gb=0.0), "train", 0, 1)
  assert not shard.decoded
  for i, (path, label) in enumerate(expected):
    encoded, read_label = shard.read(tf.constant(i, tf.int64))
    image = decoding.decode_rgb(encoded).numpy()
    np.testing.assert_array_equal(image, _pil_rgb(path), err_msg=path)
    assert int(read_label) == label


def test_index_is_reused_and_follows_changes(tmp_path, monkeypatch):
  folder_fake.image_folder(str(tmp_path), splits=("train",), per_class=3)
  checked = []
  real_check = folder_index._check_shapes  # pylint: disable=protected-access

  def counting_check(paths, description):
    checked.append(len(paths))
    return real_check(paths, description)

  monkeypatch.setattr(folder_index, "_check_shapes", counting_check)
  first = folder_index.build(str(tmp_path), "train", None)
  assert checked == [9] and len(first) == 9
  assert (tmp_path / ".vicreg_haiku_index").is_dir()
  again = folder_index.build(str(tmp_path), "train", None)
  assert checked == [9]  # nothing decoded again
  np.testing.assert_array_equal(again.paths, first.paths)
  rng = np.random.default_rng(3)
  added = folder_fake.write_images(str(tmp_path / "train" / "n09999999"), 1,
                                   rng, prefix="new")
  changed = first.full_paths()[0]
  folder_fake.save(changed, folder_fake.photo(rng, 20, 30))
  os.remove(first.full_paths()[1])
  updated = folder_index.build(str(tmp_path), "train", None)
  assert checked == [9, 2]  # the new file and the rewritten one
  assert len(updated) == 9 and updated.class_names[-1] == "n09999999"
  assert updated.full_paths()[-1] == added[0]
  assert (updated.heights[0], updated.widths[0]) == (20, 30)


def test_splits_joined_root_and_class_filter(imagenet_like):
  root, layout, _ = imagenet_like
  config = _config(root, index_dir=str(root / "index"))
  both = sources.split_info(config, "train+val")
  assert both.num_examples == len(layout["train"]) + len(layout["val"])
  assert both.class_names == tuple(sorted(folder_fake.WNIDS))
  kept = sorted(folder_fake.WNIDS)[1:]
  config.dataset.classes = ",".join(kept[::-1])
  _clear_caches()
  info = sources.split_info(config, "val")
  assert info.class_names == tuple(kept)
  shard = sources.shard(config, "val", 0, 1)
  labels = [int(shard.read(tf.constant(i, tf.int64))[1])
            for i in range(shard.size)]
  expected = [l - 1 for _, l in sorted(layout["val"]) if l > 0]
  assert labels == expected
  config.dataset.classes = "n01440764,n00000000"
  _clear_caches()
  with pytest.raises(shards.DataError, match="absent from .*n00000000"):
    sources.split_info(config, "val")


def test_imagenet100_list_ships_with_the_package():
  names = class_filter.class_filter("imagenet100")
  assert len(names) == len(set(names)) == 100
  assert names[:2] == ("n02869837", "n01749939")
  assert all(n.startswith("n") and len(n) == 9 for n in names)


def test_unlabelled_folder_and_refusals(tmp_path):
  photos = tmp_path / "photos"
  folder_fake.write_images(str(photos), 5, np.random.default_rng(0))
  folder_fake.write_images(str(photos / "2024" / "july"), 2,
                           np.random.default_rng(1))
  config = _config(photos, pretrain_split=".", train_split=".",
                   test_split=".")
  info = sources.split_info(config, ".")
  assert info.num_examples == 7 and not info.labelled
  assert "unlabelled" in datasets.labels_missing(config)
  config.dataset.classes = "a,b"
  _clear_caches()
  with pytest.raises(shards.DataError, match="unlabelled"):
    sources.split_info(config, ".")

  def refused(root, split, match):
    _clear_caches()
    with pytest.raises(shards.DataError, match=match) as error:
      sources.split_info(_config(root), split)
    assert "\n" not in str(error.value)

  refused(tmp_path / "nowhere", "train", "does not exist")
  refused(photos, "missing", "does not exist")
  (tmp_path / "empty" / "train").mkdir(parents=True)
  refused(tmp_path / "empty", "train", "holds no images")
  labelled = tmp_path / "labelled"
  folder_fake.write_images(str(labelled / "train" / "cat"), 2,
                           np.random.default_rng(2))
  (labelled / "train" / "dog").mkdir()
  refused(labelled, "train", "class directory .*dog holds no images")


def test_eval_split_with_other_classes_is_refused(tmp_path):
  folder_fake.image_folder(str(tmp_path), splits=("train",), per_class=2)
  folder_fake.image_folder(str(tmp_path), splits=("val",), per_class=2,
                           classes=folder_fake.WNIDS[:2] + ("n07000000",))
  problem = datasets.labels_missing(_config(tmp_path))
  assert "other classes" in problem and "n07000000" in problem


def _pil_box_view(path, box, size, flip, resize):
  """torchvision's RandomResizedCrop + flip on the PIL image, for a box."""
  top, left, h, w = box
  view = resize(_pil_rgb(path)[top:top + h, left:left + w], size)
  return view[:, ::-1] if flip else view


def _reference_resize(pixels, size):
  return pil_reference.resize(pixels, size, size, "bicubic")


def _installed_pil_resize(pixels, size):
  return np.asarray(Image.fromarray(pixels).resize((size, size),
                                                   Image.BICUBIC))


def test_crops_of_encoded_images_match_pil(imagenet_like):
  root, layout, _ = imagenet_like
  recipe = defaults.vicreg_views()
  size = 24
  for n, (path, _) in enumerate(sorted(layout["train"])[:7]):
    encoded = tf.io.read_file(path)
    height, width = _pil_rgb(path).shape[:2]
    u = augmentations.draw(tf.constant([n, 1]), [2])
    views = augmentations.crop_views(encoded, u, recipe, size, encoded=True)
    top, left, h, w = (t.numpy() for t in augmentations.crop_boxes(
        u, height, width, recipe.crop_scale, recipe.crop_ratio))
    for v in range(2):
      flip = bool(u[v, augmentations._SLICES["flip"]][0] < recipe.flip_prob)  # pylint: disable=protected-access
      box = (top[v], left[v], h[v], w[v])
      view = views[v].numpy().astype(np.uint8)
      # Pillow's algorithm and the installed Pillow 13: to the bit.
      for resize in (_reference_resize, _installed_pil_resize):
        np.testing.assert_array_equal(
            view, _pil_box_view(path, box, size, flip, resize),
            err_msg=f"{path} view {v} {resize.__name__}")


@pytest.mark.parametrize("height, width", [(40, 56), (75, 50), (37, 37),
                                           (301, 223)])
def test_eval_view_is_resize_then_centre_crop(height, width, tmp_path):
  path = str(tmp_path / "photo.png")
  pixels = folder_fake.photo(np.random.default_rng(height), height, width)
  folder_fake.save(path, pixels, fmt="PNG")
  size = 32
  view = augmentations.eval_view(tf.io.read_file(path), size, "bicubic",
                                 None, encoded=True).numpy()
  # torchvision: Resize(size * 256 // 224) then CenterCrop(size), bilinear.
  new_h, new_w = pil_reference.resized_shape(height, width, size * 256 // 224)
  resized = pil_reference.resize(pixels, new_w, new_h, "bilinear")
  top, left = pil_reference.centre_crop_offsets(new_h, new_w, size)
  expected = resized[top:top + size, left:left + size] / 255.0
  assert view.shape == (size, size, 3)
  np.testing.assert_allclose(view, expected, atol=1e-6)


def _crop_boxes_reference(u, height, width, scale, ratio):
  """torchvision's RandomResizedCrop.get_params, in float64 NumPy, reading
  its random numbers from our uniforms' layout."""
  s = augmentations._SLICES  # pylint: disable=protected-access
  area = height * width
  for t in range(10):
    target = area * (scale[0] + (scale[1] - scale[0]) * u[s["area"]][t])
    log_r = np.log(ratio[0]) + (np.log(ratio[1]) - np.log(ratio[0])) * u[
        s["log_ratio"]][t]
    w = int(round(np.sqrt(target * np.exp(log_r))))
    h = int(round(np.sqrt(target / np.exp(log_r))))
    if 0 < w <= width and 0 < h <= height:
      top = min(int(u[s["top"]][0] * (height - h + 1)), height - h)
      left = min(int(u[s["left"]][0] * (width - w + 1)), width - w)
      return top, left, h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.95, 1.0)])
def test_crop_boxes_of_any_size_follow_torchvision(scale):
  rng = np.random.default_rng(0)
  sizes = [(375, 500), (500, 333), (37, 37), (20, 400), (400, 20), (7, 11)]
  u = rng.uniform(size=(64, augmentations.NUM_UNIFORMS)).astype(np.float32)
  ratio = (3 / 4, 4 / 3)
  for height, width in sizes:
    got = np.stack([t.numpy() for t in augmentations.crop_boxes(
        tf.constant(u), tf.constant(height), tf.constant(width), scale,
        ratio)], axis=1)
    expected = [_crop_boxes_reference(row.astype(np.float64), height, width,
                                      scale, ratio) for row in u]
    np.testing.assert_array_equal(got, expected, err_msg=f"{height}x{width}")


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


@pytest.mark.parametrize("streamed", [True, False])
def test_folder_pretrain_batches_resume_exactly(tmp_path, streamed):
  # One image size, so that the in-memory path is possible.
  folder_fake.image_folder(str(tmp_path), per_class=6, sizes=((40, 56),))
  config = _config(tmp_path, in_memory_max_gb=0.0 if streamed else 1.0)
  shard = sources.shard(config, "train", 0, 1)
  assert shard.decoded is not streamed
  steps = datasets.pretrain_steps_per_epoch(config)  # 18 // 8 = 2
  reference = _take(datasets.pretrain_batches(config), steps + 2)
  for k in (1, steps + 1):
    resumed = next(datasets.pretrain_batches(config, start_step=k))
    np.testing.assert_array_equal(resumed["view_a"], reference[k]["view_a"])
    np.testing.assert_array_equal(resumed["view_b"], reference[k]["view_b"])
  config.pretrain.augment_on = "device"
  device = next(datasets.pretrain_batches(config, start_step=1))
  for key, view in zip(("view_a", "view_b"),
                       pretrain_step.views(config, device)):
    np.testing.assert_allclose(np.asarray(view), reference[1][key], atol=2e-5)


def test_files_deleted_after_indexing_are_replaced_deterministically(
    tmp_path, capsys):
  """A file that no longer reads is left out with a warning and a list, and
  replaced by the next readable one: the batches are those of a folder
  where it holds that file's bytes (whatever was read before), and a
  resumed pipeline on the same index reads the same ones."""
  root, copy = tmp_path / "root", tmp_path / "copy"
  layout = folder_fake.image_folder(str(root), splits=("train",),
                                    per_class=6, sizes=((40, 56),))
  shutil.copytree(root / "train", copy / "train")
  config = _config(root, in_memory_max_gb=0.0)
  steps = datasets.pretrain_steps_per_epoch(config)
  sources.shard(config, "train", 0, 1)  # indexed before the deletions
  paths = [path for path, _ in layout["train"]]
  gone = {1, 7, 8, 17}
  for i in sorted(gone):
    os.remove(paths[i])
    j = next(k % len(paths) for k in range(i + 1, i + len(paths))
             if k % len(paths) not in gone)
    shutil.copyfile(paths[j], str(copy / os.path.relpath(paths[i], root)))
  after = _take(datasets.pretrain_batches(config), steps + 2)
  expected = _take(
      datasets.pretrain_batches(_config(copy, in_memory_max_gb=0.0)),
      steps + 2)
  for k in range(steps + 2):
    np.testing.assert_array_equal(after[k]["view_a"], expected[k]["view_a"])
  for k in (1, steps + 1):
    resumed = next(datasets.pretrain_batches(config, start_step=k))
    np.testing.assert_array_equal(resumed["view_a"], after[k]["view_a"])
    np.testing.assert_array_equal(resumed["view_b"], after[k]["view_b"])
  warning = [l for l in capsys.readouterr().out.splitlines()
             if "no longer read" in l][-1]
  assert "4 of 18 files no longer read and are left out" in warning
  listed = glob.glob(os.path.join(root, folder_index.DEFAULT_INDEX_DIR,
                                  "*.unreadable.txt"))
  assert listed and listed[0] in warning
  with open(listed[0]) as f:
    assert sorted(line.split("\t")[0] for line in f) == sorted(
        paths[i] for i in gone)


def test_streamed_and_in_memory_give_the_same_batches(tmp_path):
  folder_fake.image_folder(str(tmp_path), per_class=4, sizes=((40, 56),))
  batches = {}
  for budget in (0.0, 1.0):
    _clear_caches()
    config = _config(tmp_path, in_memory_max_gb=budget)
    batches[budget] = (
        next(datasets.pretrain_batches(config, start_step=1)),
        next(datasets.labelled_batches(config, "train", batch_size=4,
                                       augment=True)),
        next(datasets.eval_batches(config, "val", batch_size=4)))
  for streamed, in_memory in zip(batches[0.0], batches[1.0]):
    for key in streamed:
      np.testing.assert_array_equal(streamed[key], in_memory[key])


def test_folder_shards_are_strided_disjoint_and_cover(imagenet_like):
  root, layout, _ = imagenet_like
  config = _config(root, index_dir=str(root / "index"), in_memory_max_gb=0.0)
  ids = [sources.shard(config, "train", i, 3).global_ids for i in range(3)]
  assert sorted(np.concatenate(ids)) == list(range(len(layout["train"])))
  shards = [sources.shard(config, "train", i, 3) for i in range(3)]
  labels = [{int(s.read(tf.constant(j, tf.int64))[1]) for j in range(s.size)}
            for s in shards]
  assert all(l == {0, 1, 2} for l in labels)  # strided: every class, each
  local = next(datasets.pretrain_batches(config, process_index=1,
                                         process_count=2))
  assert local["view_a"].shape == (4, 16, 16, 3)


def test_eval_and_labelled_batches_on_variable_sizes(imagenet_like):
  root, layout, _ = imagenet_like
  config = _config(root, index_dir=str(root / "index"))
  batches = list(datasets.eval_batches(config, "val", batch_size=8))
  masks = np.concatenate([b["mask"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])[masks]
  assert masks.sum() == len(layout["val"])
  assert sorted(labels) == sorted(l for _, l in layout["val"])
  assert batches[0]["image"].shape == (8, 16, 16, 3)
  train = next(datasets.labelled_batches(config, "train", batch_size=8,
                                         augment=True))
  assert train["image"].shape == (8, 16, 16, 3)
  assert set(train["label"]) <= {0, 1, 2}


def test_remote_listing_gives_the_local_index(imagenet_like, monkeypatch,
                                              tmp_path):
  """gs:// folders are walked through tf.io.gfile (names only: no sizes or
  modification times to compare); the same files, labels and sizes."""
  root, _, _ = imagenet_like
  local = folder_index.build(str(root), "train", str(tmp_path / "local"))
  monkeypatch.setattr(folder_index, "is_local", lambda path: False)
  remote = folder_index.build(str(root), "train", str(tmp_path / "remote"))
  np.testing.assert_array_equal(remote.paths, local.paths)
  np.testing.assert_array_equal(remote.labels, local.labels)
  np.testing.assert_array_equal(remote.heights, local.heights)
  assert remote.class_names == local.class_names


def test_a_fraction_of_the_labels_is_a_fixed_pick_per_class(imagenet_like):
  root, layout, _ = imagenet_like
  config = _config(root, index_dir=str(root / "index"))
  labels = np.array([l for _, l in sorted(layout["train"])])
  info = sources.split_info(config, "train", label_fraction=0.3)
  assert info.num_examples == 3 * round(0.3 * 7)  # 7 an class: 2 each
  shard = sources.shard(config, "train", 0, 1, label_fraction=0.3)
  picked = shard.global_ids
  assert sorted(np.bincount(labels[picked])) == [2, 2, 2]
  np.testing.assert_array_equal(
      picked, sources.per_class_pick(labels, 0.3, config.seed))
  # Another seed, another pick; the shards of 2 processes cover it.
  assert not np.array_equal(picked,
                            sources.per_class_pick(labels, 0.3, seed=1))
  both = np.concatenate([sources.shard(config, "train", i, 2, 0.3).global_ids
                         for i in range(2)])
  assert sorted(both) == sorted(picked)
  batch = next(datasets.labelled_batches(config, "train", batch_size=6,
                                         augment=True, label_fraction=0.3))
  assert sorted(batch["label"]) == [0, 0, 1, 1, 2, 2]
