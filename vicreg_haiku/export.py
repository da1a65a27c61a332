"""Writes a workdir's pretrained encoder as a torchvision or timm state_dict.

  python -m vicreg_haiku.export --workdir=DIR --output=FILE.pth [--expander]

The newest pretraining checkpoint's encoder, under torchvision's ResNet key
names or timm's ViT key names (torch_weights.to_torch); --expander adds the
expander as the official projector (keys `backbone.*` and `projector.*`: the
official VICReg module's own state_dict). Prints what it wrote and the torch
lines that load it (for a ViT, the `timm.create_model(...)` of the run's
image size, patch size, pooling and depth).
"""

import argparse
import re
import sys
from typing import Any, Mapping

import ml_collections

# torchvision's ResNets have 64 channels in the first stage, and no argument
# that changes it.
_TORCHVISION_WIDTH = 64
_PROJECTOR_LINEAR = re.compile(r"projector\.(\d+)\.weight")


def _projector_line(state_dict: Mapping[str, Any]) -> str:
  """The official Projector (main_vicreg.py) of the state_dict's sizes."""
  linears = sorted((int(match.group(1)), tuple(value.shape))
                   for key, value in state_dict.items()
                   if (match := _PROJECTOR_LINEAR.fullmatch(key))
                   and value.ndim == 2)
  layers = []
  for _, (outputs, inputs) in linears[:-1]:
    layers += [f"torch.nn.Linear({inputs}, {outputs})",
               f"torch.nn.BatchNorm1d({outputs})", "torch.nn.ReLU(True)"]
  outputs, inputs = linears[-1][1]
  layers.append(f"torch.nn.Linear({inputs}, {outputs}, bias=False)")
  return f"projector = torch.nn.Sequential({', '.join(layers)})"


def _transforms():
  # Imported when used, as main's imports: --help does not wait for JAX.
  from vicreg_haiku.models import transforms  # pylint: disable=g-import-not-at-top
  return transforms


def _timm_lines(config: ml_collections.ConfigDict) -> list[str]:
  """timm's ViT of the run: its vit_*_patch16_224 at the run's sizes (timm's
  names assume 224 px, patch 16 and token pooling); mean pooling is timm's
  global_pool="avg", whose fc_norm is our final LayerNorm."""
  model = config.model
  depth = "" if model.depth is None else f", depth={model.depth}"
  pool = "avg" if model.pool == "mean" else "token"
  patch = _transforms().patch_size(config)
  return ["import timm, torch",
          f"model = timm.create_model('{model.encoder}_patch16_224', "
          f"pretrained=False, num_classes=0, img_size="
          f"{config.dataset.image_size}, patch_size={patch}, "
          f"global_pool='{pool}'{depth})"]


def torch_lines(config: ml_collections.ConfigDict,
                state_dict: Mapping[str, Any], path: str) -> list[str]:
  """Python lines that build a torch model of config's encoder (and the
  official projector, when the state_dict has one) and load `path`, which
  holds `state_dict`, into it with strict=True."""
  model = config.model
  if _transforms().is_vit(config):
    lines = _timm_lines(config)
  else:
    lines = ["import torch, torchvision",
             f"model = torchvision.models.{model.encoder}()",
             "model.fc = torch.nn.Identity()"]
    if model.stem == "cifar":
      lines += [f"model.conv1 = torch.nn.Conv2d(3, {model.width}, 3, 1, 1, "
                "bias=False)", "model.maxpool = torch.nn.Identity()"]
  if not any(key.startswith("projector.") for key in state_dict):
    return lines + [f"model.load_state_dict(torch.load({path!r}), "
                    "strict=True)"]
  return lines + [
      f"state = torch.load({path!r})",
      "model.load_state_dict({k.removeprefix('backbone.'): v for k, v in "
      "state.items() if k.startswith('backbone.')}, strict=True)",
      _projector_line(state_dict),
      "projector.load_state_dict({k.removeprefix('projector.'): v for k, v "
      "in state.items() if k.startswith('projector.')}, strict=True)"]


def _how_to_load(config: ml_collections.ConfigDict,
                 state_dict: Mapping[str, Any], path: str) -> str:
  width = config.model.width
  if not _transforms().is_vit(config) and (
      width != _TORCHVISION_WIDTH):
    return (f"width {width}: no torchvision constructor builds this encoder "
            f"(its first stage has {_TORCHVISION_WIDTH} channels); a ResNet "
            f"with {width}, {2 * width}, {4 * width}, {8 * width} channels per"
            " stage under torchvision's module names loads it with "
            "strict=True")
  return "load it in PyTorch with:\n" + "\n".join(
      "  " + line for line in torch_lines(config, state_dict, path))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m vicreg_haiku.export",
      description="Writes a workdir's pretrained encoder as a torchvision "
      "state_dict (.pth).")
  parser.add_argument("--workdir", required=True,
                      help="a vicreg-haiku workdir with pretraining "
                      "checkpoints (may be gs://)")
  parser.add_argument("--output", required=True, help="the .pth to write")
  parser.add_argument("--expander", action="store_true",
                      help="add the expander as the official projector")
  args = parser.parse_args(argv)
  # Imported here so that --help and usage errors do not wait for TF and JAX.
  from vicreg_haiku import user_errors  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.evaluation import pretrained  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.models import torch_weights  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.models import transforms  # pylint: disable=g-import-not-at-top
  try:
    config = pretrained.read_config(args.workdir)
    params, net_state, step = pretrained.restore_pretrained(config,
                                                            args.workdir)
    state_dict = torch_weights.to_torch(params, net_state,
                                        expander=args.expander)
    size = torch_weights.write_state_dict(state_dict, args.output)
  except user_errors.USER_ERRORS as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  part = "encoder and expander" if args.expander else "encoder"
  model = config.model
  settings = (f"patch_size={transforms.patch_size(config)}, pool={model.pool}"
              if transforms.is_vit(config)
              else f"stem={model.stem}, width={model.width}")
  print(f"wrote {args.output} ({size / 2**20:.1f} MiB, {len(state_dict)} "
        f"tensors): the {part} of {args.workdir}/pretrain step {step} "
        f"({model.encoder}, {settings})")
  print(_how_to_load(config, state_dict, args.output))
  return 0


if __name__ == "__main__":
  sys.exit(main())
