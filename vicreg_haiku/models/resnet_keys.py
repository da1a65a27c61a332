"""torchvision's ResNet key names for our ResNet modules (models/resnet.py).

torch_weights.py reads and writes the state_dicts; this module names their
keys and lists them in torch's order.
"""

import math
import re

_STEM = {"stem_conv": "conv1", "stem_batch_norm": "bn1"}
_SHORTCUT = {"shortcut_conv": "downsample.0",
             "shortcut_batch_norm": "downsample.1"}
_BLOCK = re.compile(r"stage_(\d+)_block_(\d+)")
_BLOCK_LAYER = re.compile(r"(conv|batch_norm)_(\d+)")
# The classifier a torchvision ResNet has and a VICReg encoder has not.
HEAD = ("fc.weight", "fc.bias")
# torch's registration order of these names, for listing keys as torch does.
_TOKEN = re.compile(r"([a-z_]*)(\d*)")
_TOKEN_ORDER = {name: rank for rank, name in enumerate((
    "", "conv", "bn", "layer", "downsample", "module", "backbone",
    "projector", "weight", "bias", "running_mean", "running_var",
    "num_batches_tracked"))}


def torch_module(path: list[str]) -> str:
  """torch's name of an encoder module below "encoder/", e.g.
  ["stage_1_block_0", "batch_norm_0"] -> layer2.0.bn1."""
  if path[0] in _STEM:
    return _STEM[path[0]]
  stage, block = _BLOCK.fullmatch(path[0]).groups()
  prefix = f"layer{int(stage) + 1}.{block}"
  if path[1] in _SHORTCUT:
    return f"{prefix}.{_SHORTCUT[path[1]]}"
  kind, index = _BLOCK_LAYER.fullmatch(path[1]).groups()
  return f"{prefix}.{'conv' if kind == 'conv' else 'bn'}{int(index) + 1}"


def torch_order(key: str) -> list[tuple[float, int]]:
  """Sorts keys as torch lists them: conv1, bn1, layer1.0.conv1, .bn1, ...,
  .downsample.*, ..., projector.0, ...; weight, bias, running_mean, ...

  Each dotted part sorts by its number first ("conv2" after "bn1"; none: last)
  and then by its name.
  """
  parts = []
  for token in key.split("."):
    name, number = _TOKEN.fullmatch(token).groups()
    parts.append((int(number) if number else math.inf,
                  _TOKEN_ORDER.get(name, len(_TOKEN_ORDER))))
  return parts
