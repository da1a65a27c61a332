"""What a user's own photos give: neighbours.png, the embed command's
arrays, search for a query image and near-duplicates, and the refusals.

The folder holds distant crops of scikit-learn's two sample photos and
synthetic images (all unrelated), and three near-duplicates: copies of
three of them resized by 4% and re-encoded as JPEG at quality 50.
"""

import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from test_config import load_config

from vicreg_haiku import embed
from vicreg_haiku import neighbours
from vicreg_haiku import runner
from vicreg_haiku.data import datasets
from vicreg_haiku.evaluation import embeddings
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.evaluation import retrieval

_COPIED = ("china_a", "flower_b", "stripes")
# Measured on this fixture: the copies' similarity to their originals is
# 0.992-1.0, any unrelated pair's at most 0.968.
_THRESHOLD = 0.98


def _unrelated_images() -> dict[str, np.ndarray]:
  from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top
  china, flower = load_sample_images().images
  yy, xx = np.mgrid[:96, :128]
  return {
      "china_a": china[:96, :128], "china_b": china[-96:, -128:],
      "flower_a": flower[:96, :128], "flower_b": flower[-96:, -128:],
      "stripes": np.stack([(xx // 8 % 2) * 255, (yy // 8 % 2) * 200, xx * 2],
                          -1).astype(np.uint8),
      "noise": np.random.default_rng(0).integers(0, 256, (96, 128, 3),
                                                 dtype=np.uint8),
      "gradient": np.stack([xx * 2, yy * 2, 255 - xx * 2],
                           -1).astype(np.uint8)}


def _near_copy(pixels: np.ndarray) -> bytes:
  height, width = pixels.shape[:2]
  image = Image.fromarray(pixels).resize(
      (round(width * 0.96), round(height * 0.96)), Image.BICUBIC)
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG", quality=50)
  return buffer.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  root = tmp_path_factory.mktemp("own_photos")
  for name, pixels in _unrelated_images().items():
    Image.fromarray(pixels).save(root / f"{name}.jpg", quality=90)
  for name in _COPIED:
    (root / f"{name}_copy.jpg").write_bytes(
        _near_copy(_unrelated_images()[name]))
  return root


@pytest.fixture(scope="module")
def workdir(photos, tmp_path_factory):
  """An unlabelled folder pretrained for two steps."""
  config = load_config("folder")
  config.dataset.folder = str(photos)
  config.model.width = 8
  config.model.expander_dims = (32, 32, 32)
  config.dataset.image_size = 32
  config.eval_batch_size = 4
  config.pretrain.update(batch_size=8, max_steps=2, log_every_steps=1,
                         rankme_examples=8)
  directory = str(tmp_path_factory.mktemp("photos_run"))
  runner.run(config, directory)
  return directory


@pytest.fixture(scope="module")
def embedded(workdir, tmp_path_factory):
  output = str(tmp_path_factory.mktemp("embedded") / "out")
  assert embed.main([f"--workdir={workdir}", f"--output={output}",
                     "--expander"]) == 0
  return output


def _names(output):
  with open(os.path.join(output, embeddings.INDEX)) as f:
    return [os.path.basename(line) for line in f.read().splitlines()]


# ------------------------------------------------------------- retrieval ---


def _at_angles(direction, other, angles):
  return np.cos(angles)[:, None] * direction + np.sin(angles)[:, None] * other


def test_nearest_finds_neighbours_built_at_known_angles():
  rng = np.random.default_rng(0)
  basis = np.linalg.qr(rng.normal(size=(12, 12)))[0]
  angles = np.array([0.5, 0.1, 0.9, 0.3, 1.4, 0.2, 0.7])  # distinct
  # Two queries in orthogonal planes; keys at known angles from each, with
  # random lengths (cosine ignores them), shuffled; the queries are keys too.
  keys = [basis[0] * 3, basis[2] * 0.5]
  keys += list(_at_angles(basis[0], basis[1], angles) * rng.uniform(
      0.5, 4, (len(angles), 1)))
  keys += list(_at_angles(basis[2], basis[3], angles + 0.3))
  order = rng.permutation(len(keys))
  keys = np.array(keys)[order]
  where = np.argsort(order)  # original position -> shuffled row
  queries = np.array([where[0], where[1]])
  found, sims = retrieval.nearest(keys[queries], keys, 4, exclude=queries,
                                  block=3)
  first = where[2 + np.argsort(angles)[:4]]
  np.testing.assert_array_equal(found[0], first)
  np.testing.assert_allclose(sims[0], np.cos(np.sort(angles)[:4]),
                             atol=1e-6)
  # The other plane's keys (and the other query) are orthogonal: 0.
  second = 2 + len(angles) + np.argsort(angles)[:4]
  np.testing.assert_array_equal(found[1], where[second])
  np.testing.assert_allclose(sims[1], np.cos(np.sort(angles)[:4] + 0.3),
                             atol=1e-6)


def test_nearest_excludes_the_query_breaks_ties_by_row_and_caps_k():
  keys = np.array([[1, 0], [2, 0], [0, 1], [3, 0]], np.float32)
  found, sims = retrieval.nearest(keys[[1]], keys, 10, exclude=np.array([1]),
                                  block=2)
  np.testing.assert_array_equal(found, [[0, 3, 2]])  # equal 1.0: row order
  np.testing.assert_allclose(sims, [[1, 1, 0]])
  found, _ = retrieval.nearest(keys[[1]], keys, 2)
  np.testing.assert_array_equal(found, [[0, 1]])
  # 20 ties for the first place among 100 keys, k=10, in one block and
  # across blocks: the 10 of lowest rows, in row order.
  rng = np.random.default_rng(0)
  angles = rng.uniform(0.1, 1.5, 100)
  tied = np.sort(rng.choice(100, 20, replace=False))
  angles[tied] = 0
  many = np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(
      1, 5, (100, 1))
  for block in (100, 7):
    found, _ = retrieval.nearest(keys[[0]], many, 10, block=block)
    np.testing.assert_array_equal(found[0], tied[:10])


def test_duplicate_groups_join_chains_and_leave_the_rest_out():
  degrees = np.array([0, 90, 10, 200, 20, 180.5, 300])
  x = np.stack([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))], 1)
  threshold = math.cos(math.radians(12))  # 10 degrees apart: linked
  groups = retrieval.duplicate_groups(x, threshold, block=3)
  # 0-10-20 chain (0 and 20 are 20 degrees apart, linked through 10);
  # 200 and 180.5 are 19.5 apart, not linked.
  assert groups == [[0, 2, 4]]
  assert retrieval.duplicate_groups(x, 1.0) == []
  assert retrieval.duplicate_groups(np.repeat(x[:1], 3, 0), 1.0) == [[0, 1, 2]]


# ----------------------------------------------------------------- embed ---


def test_neighbours_png_is_written_for_an_unlabelled_folder(workdir):
  with Image.open(os.path.join(workdir, "neighbours.png")) as image:
    width, height = image.size
  # Two panels of 9 images of at least 96 px; as many rows as images (10)
  # allow queries with 8 neighbours: 8.
  assert width >= 2 * 9 * 96 and height >= 8 * 96


def test_embed_rows_are_the_encoders_features_of_the_indexed_files(
    workdir, embedded, photos):
  config = pretrained.read_config(workdir)
  names = _names(embedded)
  assert sorted(names) == sorted(n for n in os.listdir(photos)
                                 if n.endswith(".jpg"))  # each, once
  x = np.load(os.path.join(embedded, embeddings.FEATURES))
  assert x.dtype == np.float32 and x.shape == (len(names), 64)
  assert np.load(os.path.join(embedded, embeddings.EXPANDER)).shape == (
      len(names), 32)
  np.testing.assert_array_equal(
      np.load(os.path.join(embedded, embeddings.LABELS)), -1)
  encoder = pretrained.load_encoder(workdir)
  images = np.stack([datasets.eval_image(config, str(photos / n))
                     for n in names])
  np.testing.assert_allclose(x, np.asarray(encoder(images)), rtol=1e-5,
                             atol=1e-5)


def test_float16_rows_and_overrides(workdir, embedded, tmp_path):
  output = str(tmp_path / "half")
  assert embed.main([f"--workdir={workdir}", f"--output={output}",
                     "--float16", "--config.eval_batch_size=2"]) == 0
  half = np.load(os.path.join(output, embeddings.FEATURES))
  assert half.dtype == np.float16
  np.testing.assert_allclose(
      half, np.load(os.path.join(embedded, embeddings.FEATURES)), rtol=2e-3,
      atol=1e-3)


def test_resume_after_an_interruption_leaves_no_row_missing_or_twice(
    workdir, embedded, tmp_path, capsys):
  output = str(tmp_path / "resumed")
  config = pretrained.read_config(workdir)
  config.eval_batch_size = 2
  passes = embeddings.embed(config, workdir, output, ".", True, "float32")
  assert next(passes) == (0, 10)
  assert next(passes) == (2, 10)
  assert next(passes) == (4, 10)
  passes.close()  # killed after two batches
  _refused(neighbours.main, [f"--embeddings={output}", "--duplicates=0.9"],
           capsys, "holds 4 of 10 rows")
  # A kill in the middle of a batch's writes: its count not yet updated,
  # row 2 written, row 3 not (zeros, as the allocated file holds).
  with open(os.path.join(output, embeddings.META)) as f:
    meta = json.load(f)
  meta["rows_written"] = 2
  with open(os.path.join(output, embeddings.META), "w") as f:
    json.dump(meta, f)
  features = np.load(os.path.join(output, embeddings.FEATURES),
                     mmap_mode="r+")
  features[3] = 0
  features.flush()
  del features
  assert embed.main([f"--workdir={workdir}", f"--output={output}",
                     "--expander", "--config.eval_batch_size=2"]) == 0
  for name in (embeddings.FEATURES, embeddings.EXPANDER, embeddings.LABELS):
    np.testing.assert_allclose(np.load(os.path.join(output, name)),
                               np.load(os.path.join(embedded, name)),
                               rtol=1e-5, atol=1e-6)
  assert _names(output) == _names(embedded)
  assert embed.main([f"--workdir={workdir}", f"--output={output}",
                     "--expander", "--config.eval_batch_size=2"]) == 0


# ------------------------------------------------------------ neighbours ---


def test_duplicates_groups_the_copies_and_nothing_else(embedded, capsys):
  assert neighbours.main([f"--embeddings={embedded}",
                          f"--duplicates={_THRESHOLD}"]) == 0
  out = capsys.readouterr().out
  groups = [sorted(os.path.basename(line.split()[-1])
                   for line in block.splitlines()[1:]
                   if line.startswith("  "))  # a member
            for block in out.split("group ")[1:]]
  assert sorted(groups) == sorted([[f"{n}.jpg", f"{n}_copy.jpg"]
                                   for n in _COPIED])
  assert os.path.exists(os.path.join(embedded, "duplicates.png"))


def test_a_query_finds_its_copy_first(embedded, photos, capsys):
  query = str(photos / "flower_b_copy.jpg")
  assert neighbours.main([f"--embeddings={embedded}", f"--query={query}",
                          "--k=2"]) == 0
  lines = capsys.readouterr().out.splitlines()
  first, second = lines[1].split(), lines[2].split()
  # The query is in the set: itself first (similarity 1), then the original.
  assert first[1] == query and float(first[0]) == pytest.approx(1, abs=1e-5)
  assert second[1].endswith("flower_b.jpg") and float(second[0]) >= _THRESHOLD
  assert os.path.exists(os.path.join(embedded, "query_flower_b_copy.png"))


def _refused(main, args, capsys, *words):
  assert main(args) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("error: ") and "Traceback" not in "".join(err)
  for word in words:
    assert word in err[-1]


def test_refusals(workdir, embedded, tmp_path, capsys):
  before = {n: os.path.getmtime(os.path.join(embedded, n))
            for n in os.listdir(embedded)}
  # Another flag's, another split's and another workdir's rows.
  _refused(embed.main, [f"--workdir={workdir}", f"--output={embedded}"],
           capsys, "expander")
  _refused(embed.main, [f"--workdir={workdir}", f"--output={embedded}",
                        "--expander", "--split=china_a.jpg"], capsys)
  other = tmp_path / "not_ours"
  other.mkdir()
  (other / "notes.txt").write_text("mine")
  _refused(embed.main, [f"--workdir={workdir}", f"--output={other}"], capsys,
           "nothing is overwritten")
  _refused(embed.main, [f"--workdir={tmp_path}", f"--output={tmp_path}/x"],
           capsys, "not a vicreg-haiku workdir")
  (tmp_path / "empty_run").mkdir()
  (tmp_path / "empty_run" / "config.json").write_text(
      open(os.path.join(workdir, "config.json")).read())
  _refused(embed.main, [f"--workdir={tmp_path / 'empty_run'}",
                        f"--output={tmp_path}/y"], capsys,
           "no pretrained encoder")
  _refused(embed.main, [f"--workdir={workdir}", f"--output={tmp_path}/z",
                        "--config.model.width=64"], capsys, "model.width")
  for threshold in ("0", "1.5", "-0.2"):
    _refused(neighbours.main, [f"--embeddings={embedded}",
                               f"--duplicates={threshold}"], capsys,
             "(0, 1]")
  bad = tmp_path / "bad.jpg"
  bad.write_bytes(b"not a jpeg")
  _refused(neighbours.main, [f"--embeddings={embedded}", f"--query={bad}"],
           capsys, "does not decode")
  _refused(neighbours.main, [f"--embeddings={embedded}",
                             f"--query={tmp_path}/none.jpg"], capsys,
           "no such image file")
  _refused(neighbours.main, [f"--embeddings={tmp_path}", "--duplicates=0.9"],
           capsys, "embeddings.json not found")
  after = {n: os.path.getmtime(os.path.join(embedded, n))
           for n in before}
  assert before == after  # nothing touched


def test_neighbours_picture_frames_say_whether_the_class_matches():
  from vicreg_haiku.evaluation import plots  # pylint: disable=g-import-not-at-top
  images = np.zeros((1, 3, 8, 8, 3), np.uint8)  # black: frames stand out
  image = plots.neighbours({"t": (images, np.array([[0.9, 0.5]]),
                                  np.array([[True, False]]))})
  colours = {tuple(c) for c in image.reshape(-1, 3)}
  assert (40, 160, 60) in colours and (210, 40, 40) in colours
  image = plots.neighbours({"t": (images, np.array([[0.9, 0.5]]), None)})
  colours = {tuple(c) for c in image.reshape(-1, 3)}
  assert (40, 160, 60) not in colours and (210, 40, 40) not in colours
  # Each image shown at >= 96 px: 3 cells of 8 px upscaled 12x.
  assert image.shape[1] >= 3 * 96


def test_tsne_is_seeded_and_keeps_clusters_together():
  from vicreg_haiku.evaluation import plots  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  # Four clusters along coordinates 4-7; 0-3 are constant, so no picture
  # of two coordinates shows them.
  labels = np.repeat(np.arange(4), 30)
  x = np.zeros((120, 8))
  x[:, 4:] = 10 * np.eye(4)[labels] + rng.normal(size=(120, 4))
  xy = plots._project(x, "t-SNE")  # pylint: disable=protected-access
  np.testing.assert_array_equal(xy, plots._project(x, "t-SNE"))  # pylint: disable=protected-access
  # Every point's 5 nearest in the plane are of its own cluster.
  distances = ((xy[:, None] - xy[None]) ** 2).sum(-1)
  np.fill_diagonal(distances, np.inf)
  nearest = np.argsort(distances, axis=1)[:, :5]
  assert (labels[nearest] == labels[:, None]).all()
