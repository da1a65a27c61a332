"""Config errors: refused up front with one line naming the key."""

import importlib.util
import os
import subprocess
import sys

import pytest

from vicreg_haiku import config_checks
from vicreg_haiku.utils import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str):
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("name", ["digits", "stl10", "folder", "imagenet",
                                  "imagenet100", "imagenet_vit",
                                  "imagenet_lejepa", "folder_lejepa"])
def test_shipped_configs_are_valid(name):
  config = load_config(name)
  if config.dataset.name == "folder":
    config.dataset.folder = "/data/photos"  # the one key a user must give
  config_checks.validate(config, device_count=1)


def test_a_folder_without_its_root_is_refused():
  with pytest.raises(errors.ConfigError,
                     match=r"needs --config.dataset.folder=ROOT"):
    config_checks.validate(load_config("folder"), device_count=1)


@pytest.mark.parametrize("key, value, words", [
    ("mode", "train", "config.mode='train' is not one of"),
    ("precision", "float16", "config.precision='float16' is not one of"),
    ("model.encoder", "vit", "config.model.encoder='vit'"),
    ("model.stem", "deep", "config.model.stem='deep'"),
    ("pretrain.augmentation", "simclr", "config.pretrain.augmentation='simclr'"),
    ("pretrain.batch_size", 0, "config.pretrain.batch_size=0 must be positive"),
    ("pretrain.epochs", -1, "config.pretrain.epochs=-1 must be positive"),
    ("pretrain.base_lr", -0.1, "config.pretrain.base_lr=-0.1 must be non-negative"),
    ("finetune.lr_head", -1.0, "config.finetune.lr_head=-1.0"),
    ("augmentations.vicreg.blur_prob", (1.0, 1.5), "probabilities lie in [0, 1]"),
    ("augmentations.vicreg.blur_kernel_size", 8,
     "config.augmentations.vicreg.blur_kernel_size=8 must be a positive odd"),
    ("linear_probe.labels_per_class", (10, 0),
     "config.linear_probe.labels_per_class=(10, 0) must be a tuple of "
     "positive ints"),
    ("linear_probe.protocol", "knn",
     "config.linear_probe.protocol='knn' is not one of ('features', 'official')"),
    ("pretrain.log_every_steps", 0,
     "config.pretrain.log_every_steps=0 must be positive"),
    ("loss.name", "lejepa",
     "config.loss.name='lejepa' is not one of ('vicreg', 'sigreg')"),
    ("loss.sigreg.lambd", 1.5, "config.loss.sigreg.lambd=1.5 must lie in [0, 1]"),
    ("loss.sigreg.slices", 0, "config.loss.sigreg.slices=0 must be positive"),
    ("loss.sigreg.knots", 1, "config.loss.sigreg.knots=1 must be an int >= 2"),
    ("augmentations.seed.blur_kernel_size", -3,
     "config.augmentations.seed.blur_kernel_size=-3 must be a positive odd"),
    ("finetune.label_fraction", 0.0,
     "config.finetune.label_fraction=0.0 must lie in (0, 1]: the fraction of "
     "every class's labels the phase trains on"),
    ("supervised.label_fraction", 1.5,
     "config.supervised.label_fraction=1.5 must lie in (0, 1]"),
    ("finetune.label_fraction", None,
     "config.finetune.label_fraction=None must lie in (0, 1]"),
])
def test_bad_values_name_the_key(key, value, words):
  config = load_config("digits")
  section, _, field = key.rpartition(".")
  target = config
  for part in filter(None, section.split(".")):
    target = target[part]
  target[field] = value
  with pytest.raises(errors.ConfigError, match=None) as error:
    config_checks.validate(config, device_count=1)
  assert words in str(error.value)
  assert "\n" not in str(error.value)


def test_batch_must_divide_over_devices():
  config = load_config("digits")
  config.pretrain.batch_size = 100
  with pytest.raises(errors.ConfigError,
                     match=r"pretrain.batch_size=100 does not divide over 8"):
    config_checks.validate(config, device_count=8)


def _launch(tmp_path, *overrides):
  workdir = tmp_path / "run"
  result = subprocess.run([
      sys.executable,
      os.path.join(ROOT, "launch.py"),
      f"--config={os.path.join(ROOT, 'configs', 'digits.py')}",
      f"--workdir={workdir}", *overrides
  ],
                          capture_output=True,
                          text=True,
                          timeout=300,
                          cwd=ROOT)
  return result, workdir


@pytest.mark.parametrize("override, line", [
    ("--config.model.no_such_key=1",
     "error: --config.model.no_such_key=1: config.model has no key "
     "'no_such_key'; its keys: depth, drop_path, encoder, expander_dims, "
     "init_from, patch_size, pool, stem, width"),
    ("--config.pretrain.batchsize=8",
     "error: --config.pretrain.batchsize=8: config.pretrain has no key "
     "'batchsize' (did you mean 'batch_size'?); its keys: adamw, augment_on, "
     "augmentation, base_lr, batch_size, canvas_size, checkpoint_every_seconds, "
     "checkpoint_every_steps, clip_grad_norm, collapse_fraction, "
     "collapse_std, epochs, "
     "knn_every_steps, knn_k, knn_temperature, local_crop_scale, "
     "local_size, local_views, log_every_steps, max_steps, "
     "momentum, neighbour_images, optimizer, rankme_every_steps, "
     "rankme_examples, skip_nonfinite, trust_coefficient, "
     "warmup_epochs, weight_decay"),
    ("--config.seed.x=1",
     "error: --config.seed.x=1: config.seed is a value (0), not a section "
     "with keys"),
    ("--config.pretrain.batch_size=abc",
     "error: flag --config.pretrain.batch_size=abc: invalid literal for int() "
     "with base 10: 'abc'"),
    ("--wrokdir=x",
     "error: Unknown command line flag 'wrokdir'. Did you mean: workdir ?"),
    ("positional", "error: unexpected arguments ['positional']: settings are "
     "flags, --config.KEY=VALUE"),
])
def test_a_flag_mistake_is_one_line(tmp_path, override, line):
  result, workdir = _launch(tmp_path, override)
  assert result.returncode == 1
  assert result.stderr.splitlines() == [line]
  assert not workdir.exists()


def test_a_config_file_that_does_not_load_is_one_line(tmp_path):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config():\n  return undefined_name\n")
  for config, line in (
      (broken, "error: NameError: name 'undefined_name' is not defined"),
      (tmp_path / "missing.py",
       f"error: --config={tmp_path / 'missing.py'}: OSError: [Errno 2] No "
       f"such file or directory: '{tmp_path / 'missing.py'}'")):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config}",
         f"--workdir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [line]
  assert not (tmp_path / "run").exists()


def test_launch_refuses_a_bad_value_before_writing(tmp_path):
  """The whole of stderr is our line: TensorFlow's start-up lines (oneDNN,
  absl's pre-init notice) are not printed (launch_env)."""
  result, workdir = _launch(tmp_path, "--config.model.encoder=vit")
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
      "error: config.model.encoder='vit' is not one of "
      "('resnet18', 'resnet50', 'vit_tiny', 'vit_small', 'vit_base')"]
  assert not workdir.exists()


@pytest.mark.parametrize("overrides, line", [
    (["--config.model.encoder=vit_tiny", "--config.model.width=12"],
     "error: --config.model.width=12 is a ResNet setting, and "
     "config.model.encoder='vit_tiny' is a ViT: drop it (a ViT takes "
     "model.patch_size, model.pool, model.drop_path, model.depth)"),
    (["--config.model.stem=imagenet", "--config.model.encoder=vit_small"],
     "error: --config.model.stem='imagenet' is a ResNet setting, and "
     "config.model.encoder='vit_small' is a ViT: drop it (a ViT takes "
     "model.patch_size, model.pool, model.drop_path, model.depth)"),
    (["--config.model.pool=mean"],
     "error: --config.model.pool='mean' is a ViT setting, and "
     "config.model.encoder='resnet18' is a ResNet: drop it (a ResNet takes "
     "model.stem, model.width)"),
])
def test_a_setting_the_encoder_ignores_is_refused(overrides, line):
  config = load_config("digits")
  for override in overrides:
    key, value = override.removeprefix("--config.").split("=")
    section, field = key.split(".")
    config[section][field] = int(value) if value.isdigit() else value
  with pytest.raises(errors.ConfigError) as refused:
    config_checks.refuse_ignored_overrides(
        config, [o.removeprefix("--config.").split("=")[0] for o in overrides])
  assert f"error: {refused.value}" == line


def test_launch_refuses_a_setting_the_encoder_ignores_in_one_line(tmp_path):
  """Through launch.py: one line, exit 1, nothing written."""
  result, workdir = _launch(tmp_path, "--config.model.encoder=vit_tiny",
                            "--config.model.width=12")
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
      "error: --config.model.width=12 is a ResNet setting, and "
      "config.model.encoder='vit_tiny' is a ViT: drop it (a ViT takes "
      "model.patch_size, model.pool, model.drop_path, model.depth)"]
  assert not workdir.exists()


def test_a_vit_on_the_digits_config_says_its_resnet_settings_are_unused(
    tmp_path):
  """The digits file's width 12 is for its ResNet: a ViT passes the checks
  and says so once, and says the ViT defaults it takes, less the one the
  command line sets. A missing init_from stops the run there, after the
  config and data checks and before anything is written."""
  missing = tmp_path / "missing.pth"
  result, workdir = _launch(tmp_path, "--config.model.encoder=vit_tiny",
                            "--config.pretrain.epochs=5",
                            f"--config.model.init_from={missing}")
  lines = result.stdout.splitlines()
  assert lines.count(
      "model.width=12: a ResNet setting, unused by vit_tiny") == 1
  vit_line, = [line for line in lines if "vit_defaults" in line]
  assert "model.patch_size=" in vit_line
  assert "pretrain.epochs=" not in vit_line
  assert result.stderr.splitlines() == [
      f"error: config.model.init_from='{missing}': no such file or workdir"]
  assert result.returncode == 1
  assert not workdir.exists()


def test_child_processes_share_the_bounded_compilation_cache(tmp_path,
                                                             monkeypatch):
  """A child that wrote the cache unbounded would leave entries without
  access times, and the parent's bounded writes would then all fail."""
  from vicreg_haiku import launch_env  # pylint: disable=g-import-not-at-top
  for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE",
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
    monkeypatch.delenv(name, raising=False)
  import jax  # pylint: disable=g-import-not-at-top
  saved = {name: getattr(jax.config, name) for name in (
      "jax_compilation_cache_dir", "jax_compilation_cache_max_size",
      "jax_persistent_cache_min_compile_time_secs")}
  try:
    launch_env.enable_compilation_cache(str(tmp_path))
    child = subprocess.run(
        [sys.executable, "-c",
         "import jax; c = jax.config; print(c.jax_compilation_cache_dir, "
         "c.jax_compilation_cache_max_size, "
         "c.jax_persistent_cache_min_compile_time_secs)"],
        capture_output=True, text=True, check=True)
  finally:
    for name, value in saved.items():
      jax.config.update(name, value)
  assert child.stdout.split() == [str(tmp_path),
                                  str(launch_env.CACHE_MAX_BYTES), "0.2"]


def _value(config, key):
  for part in key.split("."):
    config = config[part]
  return config


def test_a_vit_on_the_digits_config_takes_its_vit_defaults():
  """`--config.model.encoder=vit_tiny` and nothing else: the file's ResNet
  recipe does not train a ViT in minutes, its vit_defaults do (README)."""
  vit_defaults = dict(config_checks.leaves(load_config("digits").vit_defaults))
  assert {"model.patch_size", "model.depth", "pretrain.adamw.base_lr",
          "pretrain.epochs"} <= set(vit_defaults)
  config = load_config("digits")
  config.model.encoder = "vit_tiny"
  line = config_checks.apply_vit_defaults(config, overridden=())
  for key, value in vit_defaults.items():
    assert _value(config, key) == value, key
    assert f"{key}={value}" in line
  assert "vit_defaults" not in config
  config_checks.validate(config, device_count=1)


def test_the_command_line_wins_over_the_vit_defaults():
  config = load_config("digits")
  config.model.encoder = "vit_small"
  config.model.patch_size = 2
  config.pretrain.adamw.base_lr = 1e-4
  config_checks.apply_vit_defaults(
      config, overridden={"model.encoder": "vit_small", "model.patch_size": 2,
                          "pretrain.adamw.base_lr": 1e-4})
  assert config.model.patch_size == 2
  assert config.pretrain.adamw.base_lr == 1e-4
  assert config.model.depth == load_config("digits").vit_defaults.model.depth


def test_a_resnet_on_the_digits_config_resolves_as_before():
  """The vit_defaults leave a ResNet's config as the file's without them:
  config.json records the recipe of the digits docstring."""
  config = load_config("digits")
  before = config.to_dict()
  del before["vit_defaults"]
  assert config_checks.apply_vit_defaults(config, overridden=()) is None
  assert config.to_dict() == before
  assert (config.model.encoder, config.model.width, config.model.patch_size,
          config.model.depth) == ("resnet18", 12, None, None)
  assert (config.pretrain.epochs, config.pretrain.warmup_epochs,
          config.pretrain.base_lr, config.pretrain.adamw.base_lr,
          config.augmentations.vicreg.crop_scale) == (32, 3, 0.3, 5e-4,
                                                      (0.3, 1.0))


def test_a_vit_default_naming_no_key_is_refused():
  """On the file's ResNet too: a typo shows on the file's first run."""
  config = load_config("digits")
  with config.unlocked():
    config.vit_defaults.pretrain = {"epoch": 40}
  with pytest.raises(errors.ConfigError, match=r"vit_defaults\.pretrain\."
                     r"epoch: config\.pretrain has no key 'epoch' \(did you"):
    config_checks.apply_vit_defaults(config, overridden=())
