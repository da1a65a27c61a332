"""The pretraining monitors: RankMe on the train split, kNN on the test split."""

import ml_collections
import numpy as np

from vicreg_haiku.data import datasets
from vicreg_haiku.evaluation import features
from vicreg_haiku.evaluation import metrics


class Monitor:
  """Label-free and kNN health checks while pretraining."""

  def __init__(self, config: ml_collections.ConfigDict, mesh):
    self._config = config
    self._mesh = mesh
    self._features = features.encoder_features(config)

  def rankme(self, params, net_state) -> dict[str, float]:
    train_f, _ = features.extract(self._config,
                                  self._features(params, net_state),
                                  self._config.dataset.train_split,
                                  self._mesh,
                                  limit=self._config.pretrain.rankme_examples)
    return {
        "rankme": metrics.rankme(train_f),
        "feature_std": float(np.mean(np.std(train_f, axis=0)))
    }

  @property
  def has_labels(self) -> bool:
    return datasets.labels_missing(self._config) is None

  def knn(self, params, net_state) -> dict[str, float]:
    c = self._config
    apply_fn = self._features(params, net_state)
    train_f, train_y = features.extract(c, apply_fn, c.dataset.train_split,
                                        self._mesh)
    test_f, test_y = features.extract(c, apply_fn, c.dataset.test_split,
                                      self._mesh)
    return metrics.knn(train_f,
                       train_y,
                       test_f,
                       test_y,
                       k=c.pretrain.knn_k,
                       temperature=c.pretrain.knn_temperature,
                       num_classes=datasets.num_classes(c))
