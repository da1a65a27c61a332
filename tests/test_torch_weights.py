"""PyTorch weights in and out, against torchvision and the official layouts.

torch on the CPU, random weights, no network. The references are torchvision's
ResNets themselves and an nn.Sequential built as the official VICReg
`Projector` (facebookresearch/vicreg main_vicreg.py) builds it; every
BatchNorm's weight, bias and running statistics are drawn away from 1 / 0, so
a swapped or dropped mapping of any of them changes the outputs.
"""

import copy
import functools
import json
import os
import subprocess
import sys
import textwrap

import haiku as hk
import jax
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from test_reliability import ROOT
from test_reliability import run_launch
from test_vit import MultiCropWrapper
from test_vit import dino_checkpoint
from test_vit import dino_head

from vicreg_haiku import export
from vicreg_haiku import runner
from vicreg_haiku.evaluation import classifier
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.models import heads
from vicreg_haiku.models import torch_weights
from vicreg_haiku.models import transforms
from vicreg_haiku.utils import defaults

SIZES = (96, 224, 99)  # 99: odd sizes at every stride-2 layer but the first
PROJECTOR_DIMS = (64, 64, 32)
# Largest |ours - torchvision| / max |torchvision| of features (and running
# statistics) computed with the batch's statistics. Random ResNet-50s amplify
# rounding there: torchvision's own float32 features differ from its float64
# ones by up to 4e-5, ours (whose BatchNorm sums channels as matrix-vector
# products, rounding more) from torchvision's by up to 1.1e-4; a wrong
# mapping is off by more than 1e-2 (benchmarks/torch_weights.py).
TRAIN_TOLERANCE = {"resnet18": 1e-5, "resnet50": 3e-4}


def relative_error(ours, theirs) -> float:
  theirs = np.asarray(theirs, np.float64)
  return float(np.max(np.abs(np.asarray(ours, np.float64) - theirs))
               / np.max(np.abs(theirs)))


def perturbed(module: nn.Module, seed: int) -> nn.Module:
  """`module` with every BatchNorm's affine params and running statistics
  drawn from ranges away from their 1 / 0 initial values."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for layer in module.modules():
      if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        for tensor, low, high in ((layer.weight, 0.5, 1.5),
                                  (layer.bias, -0.5, 0.5),
                                  (layer.running_mean, -0.5, 0.5),
                                  (layer.running_var, 0.5, 2.0)):
          tensor.uniform_(low, high, generator=generator)
  return module


def torchvision_resnet(arch: str, seed: int = 0) -> nn.Module:
  torch.manual_seed(seed)
  return perturbed(getattr(torchvision.models, arch)(), seed)


def official_projector(embedding: int, mlp: tuple[int, ...]) -> nn.Sequential:
  """As the official Projector: Linear, BatchNorm1d, ReLU for each hidden
  size, then a Linear without bias."""
  sizes = [embedding, *mlp]
  layers = []
  for inputs, outputs in zip(sizes[:-2], sizes[1:-1]):
    layers += [nn.Linear(inputs, outputs), nn.BatchNorm1d(outputs),
               nn.ReLU(True)]
  layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
  return nn.Sequential(*layers)


class VICRegModules(nn.Module):
  """The official VICReg module's parts, so state_dict() has its keys."""

  def __init__(self, backbone: nn.Module, projector: nn.Module):
    super().__init__()
    self.backbone = backbone
    self.projector = projector


def config_of(encoder: str, stem: str = "imagenet", width: int = 64,
              expander_dims=PROJECTOR_DIMS):
  config = defaults.base_config()
  config.model.update(dict(encoder=encoder, stem=stem, width=width,
                           expander_dims=expander_dims))
  return config


def without_head(state_dict):
  return {k: v for k, v in state_dict.items() if not k.startswith("fc.")}


def torch_features(model: nn.Module, images: np.ndarray, train: bool):
  """Pooled features of a torchvision ResNet (fc dropped) on NHWC images."""
  model = copy.deepcopy(model)
  model.fc = nn.Identity()
  model.train(train)
  with torch.no_grad():
    features = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
  return features.numpy(), model.state_dict()


@functools.cache
def encoder_passes(encoder: str):
  """jit: (params, state, images) -> (eval features, train features, BN
  state after the train pass); one compile per image shape."""
  net = hk.transform_with_state(
      lambda images, is_training: transforms.make_encoder(config_of(encoder))
      (images, is_training))

  def passes(params, state, images):
    eval_features, _ = net.apply(params, state, None, images, False)
    train_features, new_state = net.apply(params, state, None, images, True)
    return eval_features, train_features, new_state

  return jax.jit(passes)


def images_of(size: int, seed: int = 0, batch: int = 2) -> np.ndarray:
  return np.random.default_rng(seed).normal(
      size=(batch, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module", params=["resnet18", "resnet50"])
def imported(request):
  """(arch, torchvision model, our params and BN state imported from it)."""
  model = torchvision_resnet(request.param)
  params, state = torch_weights.from_torch(model.state_dict(),
                                           config_of(request.param))
  return request.param, model, params, state


@pytest.mark.parametrize("size", SIZES)
def test_features_and_statistics_equal_torchvisions(imported, size):
  arch, model, params, state = imported
  images = images_of(size)
  ours_eval, ours_train, ours_state = encoder_passes(arch)(params, state,
                                                           images)
  theirs_eval, _ = torch_features(model, images, train=False)
  theirs_train, theirs_after = torch_features(model, images, train=True)
  assert relative_error(ours_eval, theirs_eval) <= 1e-5
  assert relative_error(ours_train, theirs_train) <= TRAIN_TOLERANCE[arch]
  ours_after = torch_weights.to_torch(params, ours_state)
  for key, value in theirs_after.items():
    if key.endswith(("running_mean", "running_var")):
      assert relative_error(ours_after[key],
                            value) <= TRAIN_TOLERANCE[arch], key


def test_the_official_stem_and_backbone_layout(imported, tmp_path):
  """resnet50.pth: torchvision's keys without fc (the official ResNet has no
  fc, its padding layer no params); the official stem, ConstantPad2d(1) then
  the 7x7 conv with padding 2, gives torchvision's pad-3 numbers."""
  arch, model, _, _ = imported
  official = copy.deepcopy(model)
  official.fc = nn.Identity()
  conv = official.conv1
  conv.padding = (2, 2)
  official.conv1 = nn.Sequential(nn.ConstantPad2d(1, 0.0), conv)
  path = str(tmp_path / f"{arch}.pth")
  torch.save(without_head(model.state_dict()), path)
  params, state = torch_weights.from_torch(
      torch_weights.read_state_dict(path), config_of(arch))
  images = images_of(224, seed=1)
  ours, _, _ = encoder_passes(arch)(params, state, images)
  theirs, _ = torch_features(official, images, train=False)
  assert relative_error(ours, theirs) <= 1e-5


def _expander_passes(params, state, inputs):
  net = hk.transform_with_state(lambda x, is_training: heads.Expander(
      PROJECTOR_DIMS, name=transforms.EXPANDER)(x, is_training))
  outputs = {}
  for train in (False, True):
    outputs[train], new_state = net.apply(params, state, None, inputs, train)
  return outputs, new_state


def save_full_checkpoint(model_state_dict, path, monkeypatch):
  """Saves as main_vicreg.py does: {"epoch", "model", "optimizer"}, the
  optimizer's param groups holding a function of the script's __main__."""

  def exclude_bias_and_norm(p):
    return p.ndim == 1

  exclude_bias_and_norm.__module__ = "__main__"
  exclude_bias_and_norm.__qualname__ = "exclude_bias_and_norm"
  with monkeypatch.context() as patch:
    patch.setattr(sys.modules["__main__"], "exclude_bias_and_norm",
                  exclude_bias_and_norm, raising=False)
    torch.save({"epoch": 100, "model": model_state_dict, "optimizer": {
        "state": {}, "param_groups": [{
            "lr": 0.0, "weight_decay": 1e-6, "momentum": 0.9, "eta": 0.001,
            "weight_decay_filter": exclude_bias_and_norm,
            "lars_adaptation_filter": exclude_bias_and_norm,
            "params": [0, 1]}]}}, path)


def test_the_official_full_checkpoint(tmp_path, monkeypatch):
  backbone = torchvision_resnet("resnet50", seed=2)
  backbone.fc = nn.Identity()
  projector = perturbed(official_projector(2048, PROJECTOR_DIMS), seed=3)
  modules = VICRegModules(backbone, projector)
  # DistributedDataParallel's module. prefix, as the official training saves.
  ddp = {f"module.{k}": v for k, v in modules.state_dict().items()}
  path = str(tmp_path / "resnet50_fullckpt.pth")
  save_full_checkpoint(ddp, path, monkeypatch)
  with pytest.raises(AttributeError, match="exclude_bias_and_norm"):
    torch.load(path, weights_only=False)  # what a plain load runs into

  params, state = torch_weights.from_torch(
      torch_weights.read_state_dict(path), config_of("resnet50"))
  backbone_only = torch_weights.from_torch(backbone.state_dict(),
                                           config_of("resnet50"))
  for ours, alone in zip((params, state), backbone_only):
    assert set(transforms.encoder_part(ours)) == set(alone)
    jax.tree.map(np.testing.assert_array_equal, transforms.encoder_part(ours),
                 alone)
  inputs = np.random.default_rng(4).normal(size=(8, 2048)).astype(np.float32)
  ours, ours_state = _expander_passes(params, state, inputs)
  for train in (False, True):
    with torch.no_grad():
      theirs = projector.train(train)(torch.from_numpy(inputs)).numpy()
    assert relative_error(ours[train], theirs) <= 1e-5, train
  after = torch_weights.to_torch(params, ours_state, expander=True)
  for key, value in projector.state_dict().items():
    if key.endswith(("running_mean", "running_var")):
      assert relative_error(after[f"projector.{key}"], value) <= 1e-5, key


def test_a_dino_resnet_checkpoint_gives_its_ddp_teachers_backbone():
  """DINO wraps a ResNet's teacher in DDP too (it has BatchNorm), its fc
  replaced: module.backbone.* is read, module.head.* dropped."""
  student, teacher = (torchvision_resnet("resnet18", seed=seed)
                      for seed in (1, 2))
  student.fc = teacher.fc = nn.Identity()
  checkpoint = dino_checkpoint(MultiCropWrapper(student, dino_head(512)),
                               MultiCropWrapper(teacher, dino_head(512)),
                               ddp="module.")
  ours = torch_weights.from_torch(checkpoint, config_of("resnet18"))
  alone = torch_weights.from_torch(teacher.state_dict(), config_of("resnet18"))
  jax.tree.map(np.testing.assert_array_equal, ours, alone)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_import_then_export_is_exact_and_loads_strictly(arch):
  model = torchvision_resnet(arch, seed=5)
  params, state = torch_weights.from_torch(model.state_dict(),
                                           config_of(arch))
  exported = torch_weights.to_torch(params, state)
  expected = without_head(model.state_dict())
  assert set(exported) == set(expected)
  for key, value in expected.items():
    if not key.endswith("num_batches_tracked"):
      assert exported[key].dtype == torch.float32, key
      assert torch.equal(exported[key], value), key
  fresh = getattr(torchvision.models, arch)()
  fresh.fc = nn.Identity()
  fresh.load_state_dict(exported, strict=True)


def test_the_expander_exports_in_the_official_modules_layout():
  backbone = torchvision_resnet("resnet18", seed=6)
  backbone.fc = nn.Identity()
  projector = perturbed(official_projector(512, PROJECTOR_DIMS), seed=7)
  official = VICRegModules(backbone, projector)
  params, state = torch_weights.from_torch(official.state_dict(),
                                           config_of("resnet18"))
  exported = torch_weights.to_torch(params, state, expander=True)
  assert set(exported) == set(official.state_dict())
  target = VICRegModules(torchvision.models.resnet18(),
                         official_projector(512, PROJECTOR_DIMS))
  target.backbone.fc = nn.Identity()
  target.load_state_dict(exported, strict=True)
  again = torch_weights.from_torch(exported, config_of("resnet18"))
  jax.tree.map(np.testing.assert_array_equal, again, (params, state))


@pytest.fixture(scope="module")
def resnet18_state_dict():
  return torchvision_resnet("resnet18", seed=8).state_dict()


def refusal(state_dict, config) -> str:
  with pytest.raises(torch_weights.WeightsError) as error:
    torch_weights.from_torch(state_dict, config)
  message = str(error.value)
  assert "\n" not in message
  return message


def test_a_missing_key_is_refused_by_name(resnet18_state_dict):
  state_dict = dict(resnet18_state_dict)
  del state_dict["layer3.1.bn2.running_var"]
  assert ("missing layer3.1.bn2.running_var (shape [256])"
          in refusal(state_dict, config_of("resnet18")))


def test_an_extra_key_is_refused_by_name(resnet18_state_dict):
  state_dict = dict(resnet18_state_dict)
  state_dict["layer1.0.conv3.weight"] = torch.zeros(64, 64, 1, 1)
  assert "unexpected layer1.0.conv3.weight" in refusal(
      state_dict, config_of("resnet18"))


def test_a_misshaped_tensor_is_refused_by_name(resnet18_state_dict):
  state_dict = dict(resnet18_state_dict)
  state_dict["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
  assert ("layer2.0.conv1.weight has shape [128, 64, 1, 1], expected "
          "[128, 64, 3, 3]") in refusal(state_dict, config_of("resnet18"))


@pytest.mark.parametrize("config, words", [
    (config_of("resnet18", stem="cifar"),
     "conv1.weight has shape [64, 3, 7, 7], expected [64, 3, 3, 3]"),
    (config_of("resnet18", width=32),
     "conv1.weight has shape [64, 3, 7, 7], expected [32, 3, 7, 7]"),
    (config_of("resnet50"), "missing layer1.0.conv3.weight"),
])
def test_a_file_of_another_network_is_refused(resnet18_state_dict, config,
                                              words):
  message = refusal(resnet18_state_dict, config)
  assert words in message
  assert f"stem={config.model.stem}, width={config.model.width}" in message


def test_an_expander_of_other_sizes_is_refused():
  modules = VICRegModules(torchvision.models.resnet18(),
                          official_projector(512, PROJECTOR_DIMS))
  modules.backbone.fc = nn.Identity()
  message = refusal(modules.state_dict(),
                    config_of("resnet18", expander_dims=(128, 128, 32)))
  assert ("projector.0.weight has shape [64, 512], expected [128, 512]"
          in message)


def test_the_classifier_head_is_dropped_and_said(resnet18_state_dict,
                                                 monkeypatch):
  warnings = []
  monkeypatch.setattr(torch_weights.logging, "warning",
                      lambda *args: warnings.append(args[0] % args[1:]))
  torch_weights.from_torch(resnet18_state_dict, config_of("resnet18"),
                           source="r18.pth")
  assert warnings == ["r18.pth: dropped the classifier head fc.weight, "
                      "fc.bias (a VICReg encoder has none)"]


def test_a_pickled_model_is_refused(tmp_path):
  path = str(tmp_path / "model.pth")
  torch.save(torchvision.models.resnet18(), path)
  with pytest.raises(torch_weights.WeightsError,
                     match=r"model.pth pickles torch.nn.modules.*"
                     r"torchvision.models.resnet.ResNet, not only tensors: "
                     r"save the model's state_dict\(\) instead"):
    torch_weights.read_state_dict(path)


def test_a_file_of_something_else_is_refused(tmp_path):
  path = str(tmp_path / "tensor.pth")
  torch.save(torch.zeros(3), path)
  assert refusal(torch_weights.read_state_dict(path),
                 config_of("resnet18")).startswith(
                     "the state_dict holds a Tensor, not a state_dict")


def test_without_torch_the_error_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails
  with pytest.raises(torch_weights.WeightsError) as error:
    torch_weights.read_state_dict("resnet50.pth")
  assert str(error.value) == ("reading/writing .pth files needs PyTorch: "
                              "pip install -e '.[torch]'")


# End to end on the tiny digits run of tests/test_reliability.py (cifar stem),
# at torchvision's width so that torchvision itself loads the export.
WIDTH = ["--config.model.width=64"]


@pytest.fixture(scope="module")
def start_file(tmp_path_factory):
  """A .pth in the official VICReg module's layout: a torchvision ResNet-18
  with the cifar stem and a 512-32-32-32 official projector."""
  torch.manual_seed(9)
  backbone = torchvision.models.resnet18()
  backbone.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
  backbone.maxpool = nn.Identity()
  backbone.fc = nn.Identity()
  modules = perturbed(VICRegModules(
      backbone, official_projector(512, (32, 32, 32))), seed=9)
  path = str(tmp_path_factory.mktemp("start") / "start.pth")
  torch.save(modules.state_dict(), path)
  return path


@pytest.fixture(scope="module")
def pretrained_from_file(tmp_path_factory, start_file):
  """A 2-step pretraining that starts from start_file, at learning rate 0."""
  workdir = str(tmp_path_factory.mktemp("from_file") / "run")
  assert run_launch(workdir, *WIDTH, "--config.pretrain.base_lr=0.0",
                    "--config.pretrain.max_steps=2",
                    f"--config.model.init_from={start_file}") == 0
  return workdir


def test_pretraining_starts_from_the_file(pretrained_from_file, start_file):
  config = pretrained.read_config(pretrained_from_file)
  params, _, step = pretrained.restore_pretrained(config,
                                                  pretrained_from_file)
  imported, _ = torch_weights.from_torch(
      torch_weights.read_state_dict(start_file), config)
  assert step == 2
  # Learning rate 0: the params are still the file's, bit for bit, encoder
  # and expander.
  assert set(params) == set(imported)
  jax.tree.map(np.testing.assert_array_equal, params, imported)


def test_export_loads_into_torchvision_with_the_printed_lines(
    pretrained_from_file, tmp_path):
  output = str(tmp_path / "encoder.pth")
  result = subprocess.run(
      [sys.executable, "-m", "vicreg_haiku.export",
       f"--workdir={pretrained_from_file}", f"--output={output}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
  assert result.stdout.startswith(f"wrote {output} (")
  lines = result.stdout.split("load it in PyTorch with:\n")[1]
  namespace = {}
  exec(textwrap.dedent(lines), namespace)  # pylint: disable=exec-used
  model = namespace["model"].eval()
  images = images_of(8, seed=10, batch=5)
  with torch.no_grad():
    theirs = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
  ours = pretrained.load_encoder(pretrained_from_file)(images)
  assert relative_error(ours, theirs.numpy()) <= 1e-5


def test_export_with_the_expander(pretrained_from_file, tmp_path, capsys):
  output = str(tmp_path / "vicreg.pth")
  assert export.main([f"--workdir={pretrained_from_file}",
                      f"--output={output}", "--expander"]) == 0
  lines = capsys.readouterr().out.split("load it in PyTorch with:\n")[1]
  namespace = {}
  exec(textwrap.dedent(lines), namespace)  # pylint: disable=exec-used
  config = pretrained.read_config(pretrained_from_file)
  params, state, _ = pretrained.restore_pretrained(config,
                                                   pretrained_from_file)
  exported = {**{f"backbone.{k}": v
                 for k, v in namespace["model"].state_dict().items()},
              **{f"projector.{k}": v
                 for k, v in namespace["projector"].state_dict().items()}}
  again = torch_weights.from_torch(exported, config)
  jax.tree.map(np.testing.assert_array_equal, again, (params, state))


def test_export_refuses_a_workdir_without_pretraining(tmp_path, capsys):
  assert export.main([f"--workdir={tmp_path}",
                      f"--output={tmp_path / 'x.pth'}"]) == 1
  assert capsys.readouterr().err == (
      f"error: {tmp_path}/config.json not found: not a vicreg-haiku "
      "workdir\n")
  assert not (tmp_path / "x.pth").exists()


def test_export_refuses_an_unwritable_output(pretrained_from_file, capsys):
  assert export.main([f"--workdir={pretrained_from_file}",
                      "--output=/nonexistent/encoder.pth"]) == 1
  assert capsys.readouterr().err.startswith(
      "error: cannot write /nonexistent/encoder.pth: ")


def results_of(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


@pytest.mark.parametrize("protocol", [
    [],
    # The official weights' command: evaluate.py's protocol (one epoch).
    ["--config.linear_probe.protocol=official", "--config.linear_probe.epochs=1",
     "--config.linear_probe.labels_per_class=()"]])
def test_a_probe_alone_evaluates_an_imported_encoder(pretrained_from_file,
                                                     tmp_path, protocol):
  encoder = str(tmp_path / "encoder.pth")
  assert export.main([f"--workdir={pretrained_from_file}",
                      f"--output={encoder}"]) == 0
  workdir = str(tmp_path / "probe")
  assert run_launch(workdir, *WIDTH, "--config.mode=linear_probe",
                    f"--config.model.init_from={encoder}", *protocol) == 0
  results = results_of(workdir)
  assert results["linear_probe"]["encoder"] == encoder
  assert 0.0 <= results["linear_probe"]["top1"] <= 1.0
  if protocol:
    assert results["linear_probe"]["protocol"] == "official"
    assert "random_init_probe" not in results
  assert not os.path.exists(os.path.join(workdir, "pretrain"))


def test_another_workdir_as_init_from(pretrained_from_file):
  config = pretrained.read_config(pretrained_from_file)
  config.model.init_from = pretrained_from_file
  weights = pretrained.import_init_from(config)
  params, state, _ = pretrained.restore_pretrained(config,
                                                   pretrained_from_file)
  assert weights.source == f"{pretrained_from_file}/pretrain step 2"
  jax.tree.map(np.testing.assert_array_equal,
               (weights.params, weights.net_state), (params, state))
  config.model.width = 4
  with pytest.raises(torch_weights.WeightsError) as error:
    pretrained.import_init_from(config)
  assert str(error.value) == (
      f"config.model.width=4, but config.model.init_from={pretrained_from_file}"
      " was pretrained with 64: set --config.model.width to it")


def test_a_finetune_starts_from_the_imported_encoder(pretrained_from_file,
                                                     start_file, tmp_path):
  """Without pretraining in its workdir, the fine-tune's encoder is the
  imported one (the end-to-end path is the probe's, tested above)."""
  config = pretrained.read_config(pretrained_from_file)
  config.model.init_from = start_file
  imported = pretrained.import_init_from(config)
  encoder = pretrained.pretrained_encoder(config, str(tmp_path), imported)
  assert encoder.source == start_file
  model = transforms.classifier_model(config, num_classes=10)
  optimizer = classifier.make_optimizer(
      config, "finetune", classifier.rates(config, "finetune"))
  state = classifier.init_state(config, "finetune", model, optimizer, encoder)
  assert set(transforms.encoder_part(state.params)) == set(encoder.params)
  jax.tree.map(np.testing.assert_array_equal, (transforms.encoder_part(
      state.params), transforms.encoder_part(state.net_state)),
               (encoder.params, encoder.net_state))


def test_a_workdir_with_pretraining_does_not_import_again(
    pretrained_from_file):
  """A resumed or later run uses its own checkpoints: init_from is not even
  read (here it no longer exists)."""
  config = pretrained.read_config(pretrained_from_file)
  config.model.init_from = "/nonexistent/start.pth"
  # pylint: disable-next=protected-access
  imported_weights = runner._imported_weights
  for mode in ("pretrain", "all", "linear_probe", "finetune"):
    config.mode = mode
    assert imported_weights(config, pretrained_from_file) is None


@pytest.mark.parametrize("init_from, words", [
    ("/nonexistent/resnet50.pth",
     "config.model.init_from='/nonexistent/resnet50.pth': no such file or "
     "workdir"),
    ("START", "start.pth does not fit config.model (encoder=resnet18, "
     "stem=cifar, width=4, expander_dims=(32, 32, 32)): backbone.conv1.weight"
     " has shape [64, 3, 3, 3], expected [4, 3, 3, 3] (and "),
])
def test_a_bad_init_from_stops_before_the_workdir_is_written(
    start_file, tmp_path, capsys, init_from, words):
  init_from = start_file if init_from == "START" else init_from
  workdir = tmp_path / "run"
  assert run_launch(str(workdir), "--config.mode=linear_probe",
                    f"--config.model.init_from={init_from}") == 1
  errors = [l for l in capsys.readouterr().err.splitlines()
            if l.startswith("error: ")]
  assert len(errors) == 1 and words in errors[0], errors
  assert not workdir.exists()
