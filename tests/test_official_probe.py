"""The official linear evaluation (evaluate.py --weights freeze), checked
against torch's SGD + CosineAnnealingLR and a NumPy step on frozen features."""

import os
import shutil

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from test_config import load_config
from test_runner import tiny

from vicreg_haiku import config_checks
from vicreg_haiku import runner
from vicreg_haiku.data import datasets
from vicreg_haiku.evaluation import official_probe
from vicreg_haiku.evaluation import probing
from vicreg_haiku.evaluation import results as results_lib
from vicreg_haiku.models import transforms
from vicreg_haiku.training import checkpointing
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import errors
from vicreg_haiku.utils import writers


def _config(epochs=2):
  config = tiny(load_config("digits"))
  config.linear_probe.update(protocol="official", epochs=epochs,
                             batch_size=256, labels_per_class=())
  config.linear_probe.official.update(learning_rate=0.3, weight_decay=1e-3)
  return config


def _random_encoder(config):
  """A random-init encoder with BN statistics moved off 0 / 1, so features
  in training mode (batch statistics) differ from inference mode's."""
  model = transforms.pretrain_model(config)
  optimizer, _ = pretrain_step.make_optimizer(config, 1)
  state = pretrain_step.init_state(config, model, optimizer)
  rng = np.random.default_rng(0)
  net_state = jax.tree.map(
      lambda x: jnp.asarray(rng.uniform(0.5, 1.5, x.shape), x.dtype)
      if x.ndim else x, transforms.encoder_part(state.net_state))
  return transforms.Weights(transforms.encoder_part(state.params), net_state,
                            "random encoder")


def test_schedule_and_sgd_follow_torch():
  """Weight decay on weight and bias, momentum 0.9, the lr cosine stepped
  once an epoch (torch's CosineAnnealingLR) over 3 epochs of 4 steps."""
  config = _config(epochs=3)
  config.linear_probe.official.update(learning_rate=0.5, weight_decay=0.01)
  per_epoch = 4
  config.linear_probe.batch_size = (
      datasets.num_examples(config, config.dataset.train_split) // per_epoch)
  optimizer, schedule = official_probe.make_optimizer(config)
  rng = np.random.default_rng(1)
  w, b = rng.normal(size=(6, 3)).astype(np.float32), np.zeros(3, np.float32)
  grads = rng.normal(size=(12, 7, 3)).astype(np.float32)

  head = torch.nn.Linear(6, 3)
  with torch.no_grad():
    head.weight.copy_(torch.from_numpy(w.T.copy()))
    head.bias.zero_()
  sgd = torch.optim.SGD(head.parameters(), 0.5, momentum=0.9,
                        weight_decay=0.01)
  cosine = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, 3)
  params = {"w": jnp.asarray(w), "b": jnp.asarray(b)}
  opt_state = optimizer.init(params)
  for step, g in enumerate(grads):
    np.testing.assert_allclose(schedule(step), sgd.param_groups[0]["lr"],
                               rtol=1e-6)
    head.weight.grad = torch.from_numpy(g[:6].T.copy())
    head.bias.grad = torch.from_numpy(g[6].copy())
    sgd.step()
    updates, opt_state = optimizer.update({"w": g[:6], "b": g[6]}, opt_state,
                                          params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    if (step + 1) % per_epoch == 0:
      cosine.step()
  np.testing.assert_allclose(params["w"], head.weight.detach().numpy().T,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(params["b"], head.bias.detach().numpy(),
                             rtol=1e-5, atol=1e-6)


def _softmax_grads(features, labels, w, b):
  logits = features @ w + b
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  p[np.arange(len(labels)), labels] -= 1
  return features.T @ p / len(labels), p.mean(0)


def test_a_step_trains_the_head_on_inference_mode_features():
  """One step equals SGD in NumPy on the encoder's inference-mode features
  (BatchNorm's running statistics, not the batch's)."""
  config = _config()
  weights = _random_encoder(config)
  head = official_probe.head_model(10)
  optimizer, schedule = official_probe.make_optimizer(config)
  step = jax.jit(official_probe.make_step(config, head, optimizer, schedule))
  batch = next(datasets.labelled_batches(config, "train", batch_size=64,
                                         augment=True))
  params = head.init(jax.random.key(0), jnp.zeros((1, 32)))
  state = transforms.TrainState(jnp.zeros([], jnp.int32), params, {},
                                optimizer.init(params))
  new, metrics = step(state, batch, weights.params, weights.net_state)

  features = np.asarray(
      transforms.feature_model(config).apply(weights.params, weights.net_state,
                                             None, batch["image"])[0],
      np.float64)
  train_mode = hk.transform_with_state(
      lambda images: transforms.make_encoder(config)(images, is_training=True))
  batch_statistics = train_mode.apply(weights.params, weights.net_state, None,
                                      batch["image"])[0]
  assert not np.allclose(batch_statistics, features, atol=1e-2)
  (module, leaves), = params.items()
  w, b = (np.asarray(leaves[k], np.float64) for k in ("w", "b"))
  gw, gb = _softmax_grads(features, batch["label"], w, b)
  lr, wd = 0.3, 1e-3
  np.testing.assert_allclose(new.params[module]["w"], w - lr * (gw + wd * w),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new.params[module]["b"], b - lr * (gb + wd * b),
                             rtol=1e-4, atol=1e-6)
  assert float(metrics["lr"]) == pytest.approx(lr)
  assert int(new.step) == 1


def test_head_starts_as_evaluate_py_does():
  params = official_probe.head_model(1000).init(jax.random.key(0),
                                                jnp.zeros((1, 2048)))
  (leaves,) = params.values()
  assert leaves["w"].shape == (2048, 1000)
  assert float(jnp.std(leaves["w"])) == pytest.approx(0.01, rel=0.01)
  assert float(jnp.abs(jnp.mean(leaves["w"]))) < 1e-4
  assert not np.any(leaves["b"])


def _probe(config, workdir, source="random encoder"):
  mesh = parallel.make_mesh()
  weights = _random_encoder(config)
  weights = weights._replace(source=source, **dict(zip(
      ("params", "net_state"),
      parallel.replicate((weights.params, weights.net_state), mesh))))
  return probing.run(config, workdir, mesh, weights)["linear_probe"]


def test_the_probe_reports_the_last_and_the_best_epoch(tmp_path):
  config = _config(epochs=3)
  entry = _probe(config, str(tmp_path))
  phase_dir = os.path.join(tmp_path, "linear_probe")
  per_epoch, total = official_probe.steps(config)
  records = [r for r in writers.read_metrics(phase_dir) if "test_top1" in r]
  assert [r["step"] for r in records] == [per_epoch, 2 * per_epoch, total]
  assert entry["top1"] == records[-1]["test_top1"]
  assert entry["best_top1"] == max(r["test_top1"] for r in records)
  assert {k: entry[k] for k in ("protocol", "epochs", "steps", "labels",
                                "encoder")} == {
      "protocol": "official", "epochs": 3, "steps": total, "labels": 1257,
      "encoder": "random encoder"}
  cell = results_lib.table({"linear_probe": entry})
  assert "(official protocol)" in cell
  assert f"best epoch {entry['best_top1']:.4f}" in cell


def test_the_probe_resumes_exactly(tmp_path, capsys):
  """Killed after its first epoch, the rerun resumes there and ends on the
  same head; on another encoder than it started on, it is refused."""
  config = _config(epochs=2)
  whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
  expected = _probe(config, whole)
  _probe(config, cut)
  checkpoints = os.path.join(cut, "linear_probe", "checkpoints")
  per_epoch, total = official_probe.steps(config)
  shutil.rmtree(os.path.join(checkpoints, str(total)))
  assert checkpointing.manager(checkpoints).latest_step() == per_epoch
  capsys.readouterr()
  assert _probe(config, cut) == expected
  assert f"linear_probe: resuming from step {per_epoch}" in (
      capsys.readouterr().out)
  with pytest.raises(errors.ConfigError,
                     match="holds a probe of the encoder random encoder, and "
                     "the encoder now is DIR/pretrain step 9: use a new"):
    _probe(config, cut, source="DIR/pretrain step 9")


def test_a_batch_larger_than_the_train_split_is_one_line(tmp_path):
  config = _config()
  config.update(mode="linear_probe")
  config.model.init_from = "unused.pth"
  config.linear_probe.batch_size = 2048
  with pytest.raises(datasets.DataError) as error:
    runner.run(config, str(tmp_path / "run"))
  assert str(error.value) == (
      "config.linear_probe.batch_size=2048 exceeds the 1257 examples of the "
      "train split 'train': use a smaller batch")
  assert not (tmp_path / "run").exists()


def test_the_official_protocol_refuses_label_budgets():
  config = _config()
  config.linear_probe.labels_per_class = (1, 10)
  with pytest.raises(errors.ConfigError) as error:
    config_checks.validate(config, device_count=1)
  assert str(error.value) == (
      "config.linear_probe.labels_per_class=(1, 10): label budgets are probes"
      " of protocol='features'; the official protocol trains one head on "
      "every label (set it to ())")
  config = _config()
  config.linear_probe.batch_size = 100
  with pytest.raises(errors.ConfigError, match="does not divide"):
    config_checks.validate(config, device_count=8)
