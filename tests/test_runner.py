"""The whole study end to end on digits and on a fake STL10, tiny encoder."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from test_config import load_config

from vicreg_haiku import runner
from vicreg_haiku.data import datasets
from vicreg_haiku.data import tfds_source
from vicreg_haiku.evaluation import classifier
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.models import transforms
from vicreg_haiku.training import checkpointing
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import errors


def tiny(config, **pretrain):
  config.model.width = 4
  config.model.expander_dims = (32, 32, 32)
  config.dataset.image_size = 8
  config.eval_batch_size = 256
  config.pretrain.update(dict(batch_size=64, epochs=2, warmup_epochs=1,
                              max_steps=4, log_every_steps=2,
                              checkpoint_every_steps=2, rankme_examples=64,
                              rankme_every_steps=2, knn_every_steps=0),
                         **pretrain)
  config.linear_probe.epochs = 2
  if config.linear_probe.protocol == "features":  # the official has none
    config.linear_probe.labels_per_class = (1, 3)
  for phase in (config.finetune, config.supervised):
    phase.update(epochs=1, batch_size=16, log_every_steps=20,
                 checkpoint_every_steps=20)
  return config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("digits"))
  config = tiny(load_config("digits"))
  return config, workdir, runner.run(config, workdir)


def test_results_schema(digits_run):
  _, workdir, results = digits_run
  probes = ("linear_probe", "random_init_probe", "raw_pixels_probe")
  expected = {"pretrain_knn", "finetune", "supervised"} | {
      f"{name}{budget}" for name in probes
      for budget in ("", "_1_per_class", "_3_per_class")}
  assert set(results) == expected
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f) == results
  for entry in results.values():
    assert 0.0 <= entry["top1"] <= 1.0
    assert "top5" not in entry  # digits has 10 classes
  assert results["linear_probe_3_per_class"]["labels"] == 30
  assert results["raw_pixels_probe_1_per_class"]["labels"] == 10
  assert results["linear_probe"]["labels"] == 1257
  assert results["finetune"]["labels"] == 1257
  assert results["pretrain_knn"]["steps"] == 4
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  line = f"| 3 per class | 30 | {results['linear_probe_3_per_class']['top1']:.4f} |"
  assert line in text
  assert "points of top-1 against raw pixels" in text.splitlines()[-1]


def _tensorboard_images(phase_dir):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  images = {}
  for name in os.listdir(phase_dir):
    if not name.startswith("events.out.tfevents"):
      continue
    for event in tf.compat.v1.train.summary_iterator(
        os.path.join(phase_dir, name)):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "images":
          encoded = tf.make_ndarray(value.tensor)[2]  # width, height, PNG
          images[value.tag] = tf.io.decode_png(encoded).numpy()
  return images


def test_workdir_layout(digits_run):
  _, workdir, _ = digits_run
  for path in ("config.json", "results.md", "pretrain/views.png",
               "linear_probe/embedding.npz"):
    assert os.path.getsize(os.path.join(workdir, path)) > 0, path
  for phase in runner.PHASES:
    files = os.listdir(os.path.join(workdir, phase))
    assert any(f.startswith("events.out.tfevents") for f in files), phase
    if phase != "linear_probe":
      assert "checkpoints" in files, phase
  # Each picture is a PNG in the workdir and the same image in TensorBoard.
  for png, phase, tag in (("pretrain/views.png", "pretrain", "augmented_views"),
                          ("curves.png", "pretrain", "curves"),
                          ("label_efficiency.png", "linear_probe",
                           "label_efficiency"),
                          ("embedding.png", "linear_probe", "embedding"),
                          ("neighbours.png", "pretrain", "neighbours")):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    image = tf.io.decode_png(tf.io.read_file(os.path.join(workdir, png)))
    np.testing.assert_array_equal(
        _tensorboard_images(os.path.join(workdir, phase))[tag], image.numpy())
  with open(os.path.join(workdir, "pretrain", "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [2, 4]
  for key in ("loss", "invariance", "variance", "covariance", "lr", "rankme",
              "embedding_std", "examples_per_second"):
    assert all(np.isfinite(r[key]) for r in records), key
  assert "knn_top1" in records[-1]  # the last step's monitor, the result's


def test_interrupted_pretraining_resumes_exactly(digits_run, tmp_path):
  """Stopping at step 2 and rerunning gives the uninterrupted losses, bit for
  bit: data by step, params, BN state and optimizer state all resume."""
  config, reference_dir, _ = digits_run
  config = tiny(load_config("digits"), max_steps=2)
  config.mode = "pretrain"
  runner.run(config, str(tmp_path))
  config.pretrain.max_steps = 4
  runner.run(config, str(tmp_path))

  np.testing.assert_array_equal(_pretrain_losses(str(tmp_path)),
                                _pretrain_losses(reference_dir))


def _pretrain_losses(workdir):
  with open(os.path.join(workdir, "pretrain", "metrics.jsonl")) as f:
    return np.array([[r["step"], r["loss"], r["variance"], r["covariance"]]
                     for r in map(json.loads, f)])


def test_reused_encoder_gives_the_trained_features(digits_run):
  config, workdir, _ = digits_run
  images = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype(
      np.float32)
  features = pretrained.load_encoder(workdir)(images)
  # Independently: the pretraining model's own encoder output, inference BN.
  model = transforms.pretrain_model(config)
  optimizer, _ = pretrain_step.make_optimizer(
      config, datasets.pretrain_steps_per_epoch(config))
  target = pretrain_step.init_state(config, model, optimizer)
  state = checkpointing.restore_latest(
      checkpointing.manager(os.path.join(workdir, "pretrain", "checkpoints")),
      target)
  # (each view's embedding, the first view's encoder features)
  (_, expected), _ = model.apply(state.params, state.net_state, None,
                                 images, images, is_training=False)
  assert int(state.step) == 4
  np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-6)


def test_a_probe_needs_a_pretrained_encoder(tmp_path):
  config = tiny(load_config("digits"))
  config.mode = "linear_probe"
  with pytest.raises(pretrained.MissingEncoderError,
                     match="no pretrained encoder in .*pretrain/checkpoints"):
    runner.run(config, str(tmp_path))


def test_a_workdir_refuses_another_config(digits_run):
  _, workdir, _ = digits_run
  config = tiny(load_config("digits"), batch_size=32)
  with pytest.raises(errors.ConfigError,
                     match=r"pretrain.batch_size: 64 -> 32"):
    runner.run(config, workdir)


def test_every_phase_on_fake_stl10(fake_stl10_dir, tmp_path):
  config = tiny(load_config("stl10"))  # 64 = the fake unlabelled + train
  config.dataset.data_dir = fake_stl10_dir
  config.linear_probe.labels_per_class = (1,)
  results = runner.run(config, str(tmp_path))
  assert {"pretrain_knn", "linear_probe", "random_init_probe",
          "raw_pixels_probe", "linear_probe_1_per_class",
          "random_init_probe_1_per_class", "raw_pixels_probe_1_per_class",
          "finetune", "supervised"} == set(results)
  for png in ("curves.png", "label_efficiency.png", "embedding.png",
              "pretrain/views.png"):
    assert os.path.getsize(tmp_path / png) > 0, png


def test_missing_data_stops_before_the_workdir_is_written(tmp_path,
                                                          monkeypatch):
  monkeypatch.setattr(tfds_source, "_reachable", lambda *args, **kwargs: False)
  config = tiny(load_config("stl10"))
  config.dataset.data_dir = str(tmp_path / "empty_tfds")
  with pytest.raises(datasets.DataError, match="not prepared"):
    runner.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_bfloat16_on_a_cpu_warns_once_and_runs_on(tmp_path, monkeypatch,
                                                  capsys, caplog):
  """A warning with the numbers (console and absl), not a refusal: the run
  goes on (here to the missing-data error that follows the checks)."""
  monkeypatch.setattr(tfds_source, "_reachable", lambda *args, **kwargs: False)
  config = tiny(load_config("stl10"))
  config.dataset.data_dir = str(tmp_path / "empty_tfds")
  config.precision = "bfloat16"
  with pytest.raises(datasets.DataError):
    runner.run(config, str(tmp_path / "run"))
  warnings = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith("WARNING:")]
  assert warnings == [
      "WARNING: precision=bfloat16 on a CPU: XLA:CPU upcasts the "
      "convolutions, so the step runs 2.2x slower than in float32 (17.1 "
      "against 37.6 images/s for the ResNet-18 step, batch 64, 96 px, 2 "
      "cores); --config.precision=float32 is faster here, bfloat16 pays on "
      "TPUs and GPUs"]
  assert [r.getMessage() for r in caplog.records
          if "precision=bfloat16" in r.getMessage()] == [warnings[0][9:]]
  config.precision = "float32"
  with pytest.raises(datasets.DataError):
    runner.run(config, str(tmp_path / "run"))
  assert "WARNING" not in capsys.readouterr().out


def test_finetune_and_supervised_lower_to_one_program():
  """Their rates are arguments of the step, not constants: the two phases
  compile one program (the second loads it from the compilation cache)."""
  config = tiny(load_config("digits"))
  model = transforms.classifier_model(config, datasets.num_classes(config))
  batch = {"image": jax.ShapeDtypeStruct((16, 8, 8, 3), jnp.float32),
           "label": jax.ShapeDtypeStruct((16,), jnp.int32)}
  texts = []
  for phase in classifier.PHASES:
    optimizer_for = functools.partial(classifier.make_optimizer, config, phase)
    rates = classifier.rates(config, phase)
    state = jax.eval_shape(lambda: classifier.init_state(  # pylint: disable=cell-var-from-loop
        config, "supervised", model, optimizer_for(rates), None))
    step = jax.jit(classifier.make_step(model, optimizer_for))
    texts.append(step.lower(state, batch, rates).as_text())
  assert classifier.rates(config, "finetune") != classifier.rates(
      config, "supervised")
  assert texts[0] == texts[1]


def test_a_probe_transfers_another_workdirs_encoder(digits_run,
                                                    fake_stl10_dir, tmp_path):
  """linear_probe.encoder_workdir: the digits encoder (width 4) probed on
  the fake STL10 from a config of another width; the probe's features are
  that encoder's (pretrained.load_encoder) on STL10's test images."""
  _, digits_workdir, _ = digits_run
  config = tiny(load_config("stl10"))
  config.dataset.data_dir = fake_stl10_dir
  config.model.width = 8
  config.update(mode="linear_probe")
  config.linear_probe.update(encoder_workdir=digits_workdir,
                             labels_per_class=())
  workdir = str(tmp_path / "transfer")
  results = runner.run(config, workdir)
  assert results["linear_probe"]["encoder"] == (
      f"{digits_workdir}/pretrain step 4")
  with open(os.path.join(workdir, "config.json")) as f:
    written = json.load(f)
  assert (written["model"]["width"], written["dataset"]["name"]) == (4,
                                                                    "stl10")
  encoder = pretrained.load_encoder(digits_workdir)
  images = np.concatenate([b["image"][b["mask"]] for b in datasets.eval_batches(
      config, config.dataset.test_split, batch_size=256)])
  with np.load(os.path.join(workdir, "linear_probe", "embedding.npz")) as f:
    np.testing.assert_allclose(f["vicreg"], encoder(images), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("change, words", [
    (dict(mode="all"), "use it with --config.mode=linear_probe"),
    (dict(workdir="source"), "holds its own pretraining"),
    (dict(init_from="/elsewhere.pth"), "name two encoders: set one"),
])
def test_a_transfer_that_would_be_ignored_is_refused(digits_run, tmp_path,
                                                     change, words):
  _, digits_workdir, _ = digits_run
  config = tiny(load_config("digits"))
  config.update(mode=change.get("mode", "linear_probe"))
  config.model.init_from = change.get("init_from")
  config.linear_probe.encoder_workdir = digits_workdir
  workdir = (digits_workdir if "workdir" in change
             else str(tmp_path / "transfer"))
  before = sorted(os.walk(digits_workdir))
  with pytest.raises(errors.ConfigError, match=words):
    runner.run(config, workdir)
  assert not (tmp_path / "transfer").exists()
  assert sorted(os.walk(digits_workdir)) == before
