"""example_batches: what the step benchmark feeds and the TPU plan compiles
against has pretrain_batches' keys, shapes and dtypes, on both augment
paths, with and without local views."""

import numpy as np
import pytest

import folder_fake

from vicreg_haiku.data import datasets
from vicreg_haiku.data import example_batches
from vicreg_haiku.utils import defaults


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("photos"))
  folder_fake.write_images(f"{root}/all", 8, np.random.default_rng(0),
                           sizes=[(30, 20), (17, 23)])
  return root


@pytest.mark.parametrize("augment_on", ["host", "device"])
@pytest.mark.parametrize("local_views", [0, 2])
def test_example_batches_are_shaped_as_the_pipelines(photos, augment_on,
                                                     local_views):
  config = defaults.base_config()
  config.dataset.name = "folder"
  config.dataset.folder = photos
  config.dataset.pretrain_split = "all"
  config.dataset.image_size = 12
  config.pretrain.batch_size = 4
  config.pretrain.augment_on = augment_on
  config.pretrain.canvas_size = 30
  config.pretrain.local_views = local_views
  config.augmentations.vicreg.rotation_degrees = 5.0
  want = next(datasets.pretrain_batches(config))
  got = example_batches.pretrain_batch(config, 4, image=(30, 20))
  assert sorted(got) == sorted(want)
  assert ("local_views" in want or "local_rows" in want) == bool(local_views)
  for key, value in want.items():
    assert got[key].shape == value.shape, key
    assert got[key].dtype == value.dtype, key
