"""The results table, its summary line and the pictures' layouts."""

import numpy as np

from vicreg_haiku.evaluation import plots
from vicreg_haiku.evaluation import results

RESULTS = {
    "pretrain_knn": {"top1": 0.95, "steps": 120},
    "linear_probe": {"top1": 0.985, "labels": 1257},
    "linear_probe_1_per_class": {"top1": 0.61, "labels": 10},
    "linear_probe_10_per_class": {"top1": 0.955, "labels": 100},
    "random_init_probe": {"top1": 0.74, "labels": 1257},
    "random_init_probe_1_per_class": {"top1": 0.3, "labels": 10},
    "random_init_probe_10_per_class": {"top1": 0.5, "labels": 100},
    "raw_pixels_probe": {"top1": 0.95, "labels": 1257},
    "raw_pixels_probe_1_per_class": {"top1": 0.5, "labels": 10},
    "raw_pixels_probe_10_per_class": {"top1": 0.85, "labels": 100},
    "finetune": {"top1": 0.98, "top5": 0.999, "steps": 90, "labels": 1257},
    "supervised": {"top1": 0.9, "top5": 0.99, "steps": 90, "labels": 1257},
    "official_probe": {"top1": 0.7},
}


def test_each_probe_sits_with_its_reference_lines():
  lines = results.table(RESULTS).splitlines()
  assert lines[:6] == [
      "| linear probe, frozen encoder | labels | VICReg | random init | "
      "raw pixels |",
      "|---|---|---|---|---|",
      "| all labels | 1257 | 0.9850 | 0.7400 | 0.9500 |",
      "| 1 per class | 10 | 0.6100 | 0.3000 | 0.5000 |",
      "| 10 per class | 100 | 0.9550 | 0.5000 | 0.8500 |",
      "| kNN monitor after 120 steps | | 0.9500 | | |"]
  assert ("| all labels, 90 steps | 1257 | 0.9800 (top-5 0.9990) | "
          "0.9000 (top-5 0.9900) |") in lines
  assert "| official_probe | 0.7000 |" in lines  # nothing is dropped


def test_the_summary_line_says_what_the_numbers_show():
  # At the budget nearest 10 per class: 0.955 - 0.85 and 0.955 - 0.5.
  assert results.summary(RESULTS) == (
      "VICReg probe +10.5 points of top-1 against raw pixels and +45.5 "
      "against a random-init encoder at 10 labels per class (0.955, 0.850, "
      "0.500); fine-tune +8.0 against the same network from scratch (0.980, "
      "0.900).")
  assert results.table(RESULTS).splitlines()[-1] == results.summary(RESULTS)
  assert results.summary({"pretrain_knn": {"top1": 0.5}}) is None


def test_end_to_end_rows_say_which_labels_they_trained_on():
  """A semi-supervised fine-tune and its baseline share a row when they saw
  the same labels; otherwise each has its own and the summary does not set
  one against the other."""
  semi = {"top1": 0.5, "steps": 20, "labels": 126, "label_fraction": 0.1}
  same = {"finetune": semi, "supervised": dict(semi, top1=0.25)}
  lines = results.table(same).splitlines()
  assert "| 10% of the labels, 20 steps | 126 | 0.5000 | 0.2500 |" in lines
  assert results.summary(same) == (
      "fine-tune +25.0 against the same network from scratch (0.500, 0.250).")
  subset = {"top1": 0.6, "steps": 10, "labels": 12811,
            "train_dataset": "imagenet2012_subset/1pct"}
  apart = {"finetune": subset, "supervised": RESULTS["supervised"]}
  lines = results.table(apart).splitlines()
  assert "| imagenet2012_subset/1pct, 10 steps | 12811 | 0.6000 |  |" in lines
  assert ("| all labels, 90 steps | 1257 |  | 0.9000 (top-5 0.9900) |"
          in lines)
  assert results.summary(apart) is None
  both = dict(subset, label_fraction=0.5)
  assert ("| 50% of imagenet2012_subset/1pct, 10 steps | 12811 | 0.6000 |  |"
          in results.table({"finetune": both}).splitlines())


def test_views_are_upscaled_by_nearest_neighbour_in_two_labelled_rows():
  """8 px views at 12x: pixel (y, x) of a shown view is pixel (y // 12,
  x // 12) of the view, view 1 above view 2, where the layout puts them."""
  n, size = 3, 8
  rng = np.random.default_rng(0)
  levels = rng.integers(0, 256, size=(2, n, size, size, 3))
  view_a, view_b = levels / 255.0
  image = plots.views(view_a, view_b, mean=(0.0, 0.0, 0.0),
                      std=(1.0, 1.0, 1.0))
  assert image.dtype == np.uint8 and image.ndim == 3
  grid_height = 2 * 96 + 3 * 4
  top = image.shape[0] - grid_height  # the title strip above the grid
  yy, xx = np.meshgrid(np.arange(96), np.arange(96), indexing="ij")
  for row in range(2):
    for i in range(n):
      y, x = top + 4 + row * 100, 70 + 4 + i * 100
      np.testing.assert_array_equal(image[y:y + 96, x:x + 96],
                                    levels[row, i][yy // 12, xx // 12])
  labels = image[:, :70]  # "view 1" / "view 2" are drawn left of the rows
  assert (labels < 128).any()


def test_a_lejepa_encoder_is_named_so():
  """The pretrained column, the summary and the fine-tune say which loss
  trained the encoder (config.loss.name, recorded by pretraining)."""
  lejepa = dict(RESULTS, pretrain_knn=dict(RESULTS["pretrain_knn"],
                                           loss="sigreg"))
  lines = results.table(lejepa).splitlines()
  assert lines[0] == ("| linear probe, frozen encoder | labels | LeJEPA | "
                      "random init | raw pixels |")
  assert "| trained end to end | labels | fine-tune (LeJEPA init) | " \
         "from scratch |" in lines
  assert results.summary(lejepa).startswith("LeJEPA probe +10.5 points")
  assert "VICReg" not in results.table(lejepa)
  vicreg = dict(RESULTS, pretrain_knn=dict(RESULTS["pretrain_knn"],
                                           loss="vicreg"))
  assert results.table(vicreg) == results.table(RESULTS)
