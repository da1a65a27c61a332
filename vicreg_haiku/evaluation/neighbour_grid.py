"""The nearest-neighbour pictures: what an encoder finds close to a query.

neighbours.png, written when pretraining ends: 8 queries of the pretraining
split (a pick by config.seed), each followed by its 8 nearest images by
cosine similarity of the encoder's features among up to
config.pretrain.neighbour_images of that split (a fixed pick), for the
pretrained encoder beside the same queries through the random-init one.
Unlabelled data has nothing else to show what an encoder learned.
"""

import ml_collections
import numpy as np

from vicreg_haiku.data import datasets
from vicreg_haiku.data import sources
from vicreg_haiku.evaluation import features
from vicreg_haiku.evaluation import plots
from vicreg_haiku.evaluation import probing
from vicreg_haiku.evaluation import retrieval

QUERIES, NEIGHBOURS = 8, 8
# Draws of config.seed here are kept apart from the run's other draws.
_PICK_STREAM = 7


def _recipe(config: ml_collections.ConfigDict):
  return config.augmentations[config.pretrain.augmentation]


def images_of(config: ml_collections.ConfigDict, split: str,
              rows: np.ndarray, mesh) -> np.ndarray:
  """uint8 [len(rows), S, S, 3]: the examples at `rows` of the split (in
  that order, repeats allowed) through the evaluation transform."""
  wanted = np.unique(rows)
  shown = np.zeros((len(wanted),) + (config.dataset.image_size,) * 2 + (3,),
                   np.uint8)
  recipe = _recipe(config)
  for images, _, index in features.stream(config, lambda x: x, split, mesh,
                                          examples=wanted):
    shown[np.searchsorted(wanted, index)] = plots.to_uint8(
        images, recipe.mean, recipe.std)
  return shown[np.searchsorted(wanted, rows)]


def pick(n: int, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(sorted examples among n, the queries' positions in them): up to
  `limit` examples and QUERIES of those, random but fixed by `seed`."""
  rng = np.random.default_rng([seed, _PICK_STREAM])
  examples = np.arange(n)
  if n > limit:
    examples = np.sort(rng.choice(n, limit, replace=False))
  queries = rng.choice(len(examples), min(QUERIES, len(examples)),
                       replace=False)
  return examples, queries


def panel(config: ml_collections.ConfigDict, split: str, apply_fn, mesh,
          examples: np.ndarray, queries: np.ndarray, labelled: bool):
  """One encoder's rows for plots.neighbours: (images, similarities,
  matches or None)."""
  outputs, labels = [], []
  for out, label, _ in features.stream(config, apply_fn, split, mesh,
                                       examples=examples):
    outputs.append(np.asarray(out, np.float32))
    labels.append(label)
  x, labels = np.concatenate(outputs), np.concatenate(labels)
  found, sims = retrieval.nearest(x[queries], x, NEIGHBOURS, exclude=queries)
  rows = np.concatenate([queries[:, None], found], axis=1)
  images = images_of(config, split, examples[rows.ravel()], mesh)
  matches = labels[found] == labels[queries][:, None] if labelled else None
  return images.reshape(rows.shape + images.shape[1:]), sims, matches


def picture(config: ml_collections.ConfigDict, params, net_state,
            mesh) -> np.ndarray | None:
  """neighbours.png of the pretrained encoder (params, net_state) beside the
  random-init one; None when config.pretrain.neighbour_images is 0 or the
  split has fewer examples than a query needs."""
  split = config.dataset.pretrain_split
  n = datasets.num_examples(config, split)
  if not config.pretrain.neighbour_images or n <= NEIGHBOURS:
    return None
  examples, queries = pick(n, config.pretrain.neighbour_images, config.seed)
  labelled = sources.split_info(config, split).labelled
  encoder = features.encoder_features(config)
  panels = {}
  for title, weights in (
      ("VICReg", (params, net_state)),
      ("random init", probing.random_init_encoder(config, mesh))):
    panels[f"{title}: nearest of {len(examples)} by cosine similarity"] = (
        panel(config, split, encoder(*weights), mesh, examples, queries,
              labelled))
  return plots.neighbours(panels)
