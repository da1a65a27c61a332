"""Search in an output of python -m vicreg_haiku.embed: the nearest images
to a query image file, and groups of near-duplicates, with their pictures.

The query goes through the encoder of the workdir the embeddings record
(its checkpoint of the same step) with the same evaluation transform, so its
features are those the embedding of the same file would have.
"""

import dataclasses
import os

import ml_collections
import numpy as np

from vicreg_haiku.data import datasets
from vicreg_haiku.evaluation import embeddings
from vicreg_haiku.evaluation import features
from vicreg_haiku.evaluation import neighbour_grid
from vicreg_haiku.evaluation import plots
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.evaluation import retrieval
from vicreg_haiku.models import precision
from vicreg_haiku.training import parallel

# Groups drawn in the duplicates picture, and members per group row.
SHOWN_GROUPS, SHOWN_MEMBERS = 8, 9


@dataclasses.dataclass(frozen=True)
class Embeddings:
  """An embed output, opened: features memory-mapped, not read."""
  path: str
  identity: dict
  config: ml_collections.ConfigDict
  features: np.ndarray  # [N, F], memory-mapped
  labels: np.ndarray  # int32 [N]
  names: list[str]


def open_embeddings(path: str) -> Embeddings:
  """The complete embed output at `path`; refuses a partial one."""
  meta = embeddings.read_meta(path)
  if meta["rows_written"] < meta["rows"]:
    raise embeddings.OutputError(
        f"{path} holds {meta['rows_written']} of {meta['rows']} rows: finish "
        "it by rerunning the python -m vicreg_haiku.embed command")
  identity = meta["identity"]
  config = pretrained.read_config(identity["workdir"])
  config.dataset.update(identity["dataset"])
  with open(os.path.join(path, embeddings.INDEX), encoding="utf-8") as f:
    names = f.read().splitlines()
  return Embeddings(
      path, identity, config,
      np.load(os.path.join(path, embeddings.FEATURES), mmap_mode="r"),
      np.load(os.path.join(path, embeddings.LABELS)), names)


def query_features(emb: Embeddings, image_path: str
                   ) -> tuple[np.ndarray, np.ndarray]:
  """(features [F], the transformed query as uint8 [S, S, 3]) of an image
  file, by the encoder the embeddings were made with."""
  config, identity = emb.config, emb.identity
  precision.set_compute_dtype(config.precision)
  shape = embeddings.split_shape(config, identity["split"])
  image = datasets.eval_image(config, image_path, shape)
  params, net_state, step = pretrained.restore_encoder(config,
                                                       identity["workdir"])
  if step != identity["step"]:
    raise embeddings.OutputError(
        f"{emb.path} was embedded at step {identity['step']} of "
        f"{identity['workdir']}, which now holds step {step}: embed again "
        "into a new --output to search with this encoder")
  encoder = features.encoder_features(config)(params, net_state)
  recipe = config.augmentations[config.pretrain.augmentation]
  return (np.asarray(encoder(image[None]), np.float32)[0],
          plots.to_uint8(image, recipe.mean, recipe.std))


def _images(emb: Embeddings, rows: np.ndarray) -> np.ndarray:
  return neighbour_grid.images_of(emb.config, emb.identity["split"], rows,
                                  parallel.make_mesh())


def query_picture(emb: Embeddings, query_image: np.ndarray, rows: np.ndarray,
                  sims: np.ndarray) -> np.ndarray:
  """The query and its neighbours (rows, similarities), one row."""
  images = np.concatenate([query_image[None], _images(emb, rows)])
  return plots.neighbours({f"nearest of {len(emb.names)}": (
      images[None], sims[None], None)})


def group_similarities(emb: Embeddings, group: list[int]) -> np.ndarray:
  """Each member's cosine similarity to the group's first."""
  x = retrieval.unit_rows(emb.features[group])
  return x[1:] @ x[0]


def duplicates_picture(emb: Embeddings, groups: list[list[int]]
                       ) -> np.ndarray:
  """The first groups, a row each: its first member, then the others and
  their similarity to it (blank cells where a group is shorter)."""
  shown = [g[:SHOWN_MEMBERS] for g in groups[:SHOWN_GROUPS]]
  width = max(len(g) for g in shown)
  rows = np.array([g + [g[0]] * (width - len(g)) for g in shown])
  images = _images(emb, rows.ravel()).reshape(rows.shape + (
      (emb.config.dataset.image_size,) * 2 + (3,)))
  sims = np.full((len(shown), width - 1), np.nan, np.float32)
  for i, group in enumerate(shown):
    images[i, len(group):] = 255
    sims[i, :len(group) - 1] = group_similarities(emb, group)
  return plots.neighbours({f"near-duplicate groups (first {len(shown)})":
                           (images, sims, None)}, first_label="first")
