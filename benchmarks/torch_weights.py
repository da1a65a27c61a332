"""Feature differences against torchvision, and import / export times.

  python benchmarks/torch_weights.py [--batch 2] [--repeats 3]

For random-init torchvision resnet18 and resnet50 with BatchNorm affine
params and running statistics drawn away from 1 / 0 (as the tests do), at
96, 224 and 99 px: the largest |ours - torchvision| / max |torchvision| of the
pooled features in eval and in train mode, and of the running statistics
after one train pass; beside them torchvision's own float32 error against
the same model in float64, which bounds what float32 can agree on.
Then the median time of reading a ResNet-50 .pth (read_state_dict), from_torch,
to_torch and writing it (write_state_dict), over --repeats.
"""

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import torch
import torchvision

from vicreg_haiku import xla_flags

xla_flags.set_defaults()  # before JAX starts its backend

import haiku as hk
import jax
import numpy as np

from vicreg_haiku.models import torch_weights
from vicreg_haiku.models import transforms
from vicreg_haiku.utils import defaults

SIZES = (96, 224, 99)


def relative(ours, theirs) -> float:
  theirs = np.asarray(theirs, np.float64)
  return float(np.max(np.abs(np.asarray(ours, np.float64) - theirs))
               / np.max(np.abs(theirs)))


def perturbed_resnet(arch: str, seed: int = 0) -> torch.nn.Module:
  torch.manual_seed(seed)
  model = getattr(torchvision.models, arch)()
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for layer in model.modules():
      if isinstance(layer, torch.nn.BatchNorm2d):
        layer.weight.uniform_(0.5, 1.5, generator=generator)
        layer.bias.uniform_(-0.5, 0.5, generator=generator)
        layer.running_mean.uniform_(-0.5, 0.5, generator=generator)
        layer.running_var.uniform_(0.5, 2.0, generator=generator)
  return model


def config_of(arch: str):
  config = defaults.base_config()
  config.model.update(dict(encoder=arch, stem="imagenet", width=64))
  return config


def torch_pass(model, images: np.ndarray, train: bool, dtype=torch.float32):
  model = copy.deepcopy(model).to(dtype)
  model.fc = torch.nn.Identity()
  model.train(train)
  with torch.no_grad():
    features = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()
                                      ).to(dtype))
  return features.double().numpy(), model.state_dict()


def differences(arch: str, batch: int) -> None:
  model = perturbed_resnet(arch)
  params, state = torch_weights.from_torch(model.state_dict(),
                                           config_of(arch))
  net = hk.transform_with_state(
      lambda x, t: transforms.make_encoder(config_of(arch))(x, t))

  @jax.jit
  def passes(params, state, images):
    eval_features, _ = net.apply(params, state, None, images, False)
    train_features, after = net.apply(params, state, None, images, True)
    return eval_features, train_features, after

  for size in SIZES:
    images = np.random.default_rng(0).normal(
        size=(batch, size, size, 3)).astype(np.float32)
    ours_eval, ours_train, ours_after = passes(params, state, images)
    row = [f"{arch} {size:3d} px"]
    for train, ours in ((False, ours_eval), (True, ours_train)):
      theirs, theirs_after = torch_pass(model, images, train)
      exact, _ = torch_pass(model, images, train, torch.float64)
      row.append(f"{'train' if train else 'eval'} {relative(ours, theirs):.1e}"
                 f" (torchvision f32 vs f64 {relative(theirs, exact):.1e})")
    exported = torch_weights.to_torch(params, ours_after)
    stats = max(relative(exported[k], v) for k, v in theirs_after.items()
                if k.endswith(("running_mean", "running_var")))
    row.append(f"running stats {stats:.1e}")
    print("; ".join(row), flush=True)


def timings(repeats: int) -> None:
  config = config_of("resnet50")
  model = perturbed_resnet("resnet50")
  directory = tempfile.mkdtemp()
  source = os.path.join(directory, "resnet50.pth")
  torch.save(model.state_dict(), source)
  times = {"read_state_dict": [], "from_torch": [], "to_torch": [],
           "write_state_dict": []}
  for _ in range(repeats):
    start = time.perf_counter()
    state_dict = torch_weights.read_state_dict(source)
    times["read_state_dict"].append(time.perf_counter() - start)
    start = time.perf_counter()
    params, state = jax.block_until_ready(
        torch_weights.from_torch(state_dict, config, source=source))
    times["from_torch"].append(time.perf_counter() - start)
    start = time.perf_counter()
    exported = torch_weights.to_torch(params, state)
    times["to_torch"].append(time.perf_counter() - start)
    start = time.perf_counter()
    size = torch_weights.write_state_dict(
        exported, os.path.join(directory, "out.pth"))
    times["write_state_dict"].append(time.perf_counter() - start)
  medians = ", ".join(f"{name} {statistics.median(values):.2f} s"
                      for name, values in times.items())
  print(f"ResNet-50 ({size / 2**20:.1f} MiB), median of {repeats}: {medians}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(f"torch {torch.__version__}, jax {jax.__version__}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}", file=sys.stderr)
  for arch in ("resnet18", "resnet50"):
    differences(arch, args.batch)
  timings(args.repeats)


if __name__ == "__main__":
  main()
