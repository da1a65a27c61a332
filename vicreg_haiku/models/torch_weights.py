"""PyTorch weights in and out: torchvision, official VICReg and timm ViTs.

    params, net_state = from_torch(read_state_dict("resnet50.pth"), config)
    write_state_dict(to_torch(params, net_state), "encoder.pth")

Read (`from_torch`), every layout keyed by torchvision's names:
- torchvision `resnet18` / `resnet50` state_dicts, with or without the `fc`
  classifier, which is dropped with a warning (VICReg's encoder has none);
- the official VICReg backbone (`resnet50.pth`, torch hub): torchvision's keys
  without `fc`. The official stem (facebookresearch/vicreg resnet.py) pads the
  image with `nn.ConstantPad2d(1, 0.0)` and then runs the 7x7/2 conv with
  `padding=2`: zeros 1 then 2 pixels deep on every side are zeros 3 deep, the
  very input torchvision's `padding=3` conv sees, so the outputs are the same
  numbers (the same products summed in the same order);
- the official full checkpoint (`*_fullckpt.pth`): `{"epoch", "model",
  "optimizer"}`, the model's keys under DistributedDataParallel's `module.`:
  `module.backbone.*` and the projector `module.projector.{0,1,3,4,6}.*`
  (Linear, BatchNorm1d, ReLU, ..., the last Linear without bias: the
  official `Projector`). Its optimizer pickles `exclude_bias_and_norm` from
  the training script's `__main__`; `read_state_dict` stands a placeholder in
  for such functions instead of needing them;
- `to_torch(..., expander=True)`'s own layout, `backbone.*` + `projector.*`:
  the state_dict of the official `VICReg` module itself (main_vicreg.py);
- for `model.encoder=vit_*`, timm `VisionTransformer` state_dicts (DINO's
  backbones have the same keys; models/vit_keys.py names them), a `head.*`
  dropped with a warning; position embeddings of another grid are resampled
  to the configured image size, as timm does when it loads them;
- DINO's training checkpoint (`checkpoint.pth`: `{"student", "teacher",
  "optimizer", "epoch", "args", "dino_loss"}`, facebookresearch/dino
  main_dino.py): the teacher's `backbone.*` (under `module.` where DDP
  wrapped it, as for ResNets), the network DINO's evaluations read; its DINO
  head `head.*` is dropped with a warning and the student is not read.
Key names by family: models/resnet_keys.py, models/vit_keys.py.

Every tensor is accounted for: a missing, unexpected or mis-shaped one is
refused in one line naming its key; `num_batches_tracked` is ignored (it
matters only to BatchNorm with momentum=None, which neither side uses).
Layouts: conv OIHW <-> HWIO, Linear [out, in] <-> [in, out], BatchNorm and
LayerNorm
weight/bias <-> params scale/offset, running_mean/running_var <-> BN state
mean/var. Shapes come from the model the config builds (jax.eval_shape).

torch is imported only in this module and only when a function needs it
(the `torch` extra). Files go through etils.epath (local or gs://), which
imports TensorFlow only for gs://: a process that imports torchvision after
TensorFlow can crash (TF 2.21 + torchvision 0.29), so the import order of
local reads and writes stays the caller's.
"""

import argparse
import io
import math
import re
from typing import Any, Mapping

import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from vicreg_haiku.models import resnet_keys
from vicreg_haiku.models import transforms
from vicreg_haiku.models import vit
from vicreg_haiku.models import vit_keys
from vicreg_haiku.utils import writers

BACKBONE = "backbone."
PROJECTOR = "projector."
_DDP = "module."  # DistributedDataParallel's prefix in the full checkpoint
# DINO's MultiCropWrapper holds the encoder as `backbone` beside its
# projection head `head` (mlp.*, last_layer.*), which VICReg has no use for.
_DINO_HEAD = "head."
# Training checkpoints that wrap the network's state_dict: the entry that
# holds it, what that is, and why that entry.
_WRAPPERS = (
    # DINO's checkpoint.pth, {"student", "teacher", "optimizer", "epoch",
    # "args", "dino_loss"} (main_dino.py): DINO evaluates the teacher, the
    # student's moving average (eval_linear.py's --checkpoint_key default).
    ("teacher", "the teacher's backbone of a DINO training checkpoint",
     ": the network DINO evaluates; the student is not read"),
    # The official VICReg full checkpoint, {"epoch", "model", "optimizer"},
    # read as the official evaluate.py reads it.
    ("model", "the model of an official VICReg full checkpoint", ""),
)
# What a DINO checkpoint pickles besides tensors: its training flags.
_SAFE_GLOBALS = {"argparse.Namespace": argparse.Namespace}
_COUNTER = "num_batches_tracked"
# Haiku parameter / BN-state names -> torch's.
_TORCH_NAMES = {"w": "weight", "b": "bias", "scale": "weight",
                "offset": "bias", "mean": "running_mean",
                "var": "running_var"}
_EXPANDER_LAYER = re.compile(r"(linear|batch_norm)_(\d+)")
_HWIO_TO_OIHW = (3, 2, 0, 1)
_OIHW_TO_HWIO = (2, 3, 1, 0)
_MISSING_TORCH = ("reading/writing .pth files needs PyTorch: "
                  "pip install -e '.[torch]'")


class WeightsError(ValueError):
  """Weights that do not fit the configured model, or cannot be read."""


def _torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise WeightsError(_MISSING_TORCH) from None
  return torch


def _keys(params: hk.Params):
  """The key-naming module of the encoder family in `params`."""
  encoder = params.get(transforms.ENCODER, {})
  return vit_keys if "pos_embed" in encoder else resnet_keys


def _torch_key(module: str, name: str, keys) -> str:
  """torch's key of one of our params, e.g. (encoder/stage_1_block_0/
  batch_norm_0, scale) -> layer2.0.bn1.weight."""
  top, *path = module.split("/")
  if top == transforms.EXPANDER:
    # The official Projector: Linear, BatchNorm1d, ReLU per hidden size.
    kind, index = _EXPANDER_LAYER.fullmatch(path[0]).groups()
    return (f"projector.{3 * int(index) + (kind == 'batch_norm')}."
            f"{_TORCH_NAMES[name]}")
  if not path:  # the ViT's class token and position embeddings
    return name
  return f"{keys.torch_module(path)}.{_TORCH_NAMES[name]}"


# Convs HWIO <-> OIHW, Linear [in, out] <-> [out, in]; vectors and the
# ViT's [1, tokens, width] embeddings as they are.
def _to_torch_layout(array: np.ndarray) -> np.ndarray:
  if array.ndim == 4:
    return array.transpose(_HWIO_TO_OIHW)
  return array.T if array.ndim == 2 else array


def _to_haiku_layout(array: np.ndarray) -> np.ndarray:
  if array.ndim == 4:
    return array.transpose(_OIHW_TO_HWIO)
  return array.T if array.ndim == 2 else array


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
  if len(shape) == 4:
    return tuple(shape[axis] for axis in _HWIO_TO_OIHW)
  return tuple(reversed(shape)) if len(shape) == 2 else tuple(shape)


def _entries(params: hk.Params, net_state: hk.State, parts: tuple[str, ...]):
  """(torch key without prefix, is_state, module, name, value) of the
  modules under `parts`, params first."""
  keys = _keys(params)
  for is_state, tree in ((False, params), (True, net_state)):
    for module, name, value in hk.data_structures.traverse(tree):
      if module.split("/")[0] in parts:
        yield _torch_key(module, name, keys), is_state, module, name, value


def _prefixes(keys: list[str]) -> dict[str, str]:
  """What a state_dict's layout puts before the torch names of our encoder
  ("conv1.weight", ...) and expander ("projector.0.weight", ...)."""
  ddp = _DDP if keys and all(k.startswith(_DDP) for k in keys) else ""
  vicreg = any(k.startswith(ddp + BACKBONE) for k in keys)
  return {
      transforms.ENCODER: ddp + BACKBONE if vicreg else ddp,
      transforms.EXPANDER: ddp
  }


def _model_shapes(config: ml_collections.ConfigDict):
  """Params and BN-state shapes of the pretraining model the config builds."""
  size = config.dataset.image_size
  images = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  return jax.eval_shape(
      transforms.pretrain_model(config).init, jax.random.key(0), images, images)


def _describe(config: ml_collections.ConfigDict, with_expander: bool) -> str:
  model = config.model
  if transforms.is_vit(config):
    text = (f"encoder={model.encoder}, "
            f"patch_size={transforms.patch_size(config)}, "
            f"pool={model.pool}")
  else:
    text = f"encoder={model.encoder}, stem={model.stem}, width={model.width}"
  if with_expander:
    text += f", expander_dims={tuple(model.expander_dims)}"
  return text


def _problems(state_dict: Mapping[str, Any], expected: dict[str, tuple]
              ) -> list[str]:
  """What keeps `state_dict` from filling `expected` (key -> torch shape):
  missing keys, then unexpected ones, then wrong shapes or types."""
  counters = {k.rsplit(".", 1)[0] + "." + _COUNTER for k in expected
              if k.endswith(".running_mean")}
  missing = [f"missing {k} (shape {list(shape)})"
             for k, shape in expected.items() if k not in state_dict]
  unexpected = [f"unexpected {k}" for k in state_dict
                if k not in expected and k not in counters]
  wrong = []
  for key, shape in expected.items():
    value = state_dict.get(key)
    if value is None:
      continue
    if not getattr(value, "is_floating_point", lambda: False)():
      wrong.append(f"{key} is {type(value).__name__} "
                   f"{getattr(value, 'dtype', '')}, not a float tensor")
    elif tuple(value.shape) != shape:
      wrong.append(f"{key} has shape {list(value.shape)}, expected "
                   f"{list(shape)}")
  return missing + unexpected + wrong


def _fit_pos_embed(state_dict: dict[str, Any], prefix: str,
                   expected: dict[str, tuple], source: str) -> dict[str, Any]:
  """`state_dict` with a ViT's position embeddings resampled to the grid of
  the configured image size, as timm does when it loads weights at another
  img_size (resample_abs_pos_embed); any other mismatch is left to
  _problems."""
  key = prefix + "pos_embed"
  value = state_dict.get(key)
  if key not in expected or value is None or value.ndim != 3:
    return state_dict
  shape, want = tuple(value.shape), expected[key]
  old, new = math.isqrt(shape[1] - 1), math.isqrt(want[1] - 1)
  if (shape == want or shape[::2] != want[::2] or old**2 != shape[1] - 1
      or new**2 != want[1] - 1):
    return state_dict
  logging.info("%s: resampled pos_embed from %dx%d to %dx%d patches (as "
               "timm's resample_abs_pos_embed)", source, old, old, new, new)
  resampled = vit.resample_pos_embed(
      jnp.asarray(value.detach().cpu().float().numpy()), (new, new))
  return dict(state_dict,
              **{key: _torch().from_numpy(np.array(resampled, np.float32))})


def unwrap(checkpoint: Any, source: str = "the state_dict"
           ) -> tuple[Mapping[str, Any], str | None]:
  """The state_dict in `checkpoint` and, when a training checkpoint wraps
  it (_WRAPPERS: DINO's, the official VICReg full one), which part of the
  checkpoint it is; a bare state_dict is returned as it is, with None.

  Raises WeightsError for anything else: not a mapping, or a mapping of
  other things than tensors with none of the wrappers' entries.
  """
  if not isinstance(checkpoint, Mapping):
    raise WeightsError(f"{source} holds a {type(checkpoint).__name__}, not a "
                       "state_dict")
  for entry, part, why in _WRAPPERS:
    if isinstance(checkpoint.get(entry), Mapping):
      epoch = checkpoint.get("epoch")
      at = f" (epoch {epoch})" if isinstance(epoch, int) else ""
      return checkpoint[entry], part + at + why
  others = [k for k, v in checkpoint.items()
            if not isinstance(v, _torch().Tensor)]
  if others:
    raise WeightsError(
        f"{source} is neither a state_dict nor a training checkpoint with a "
        f"{' or '.join(repr(w[0]) for w in _WRAPPERS)} entry: its "
        f"{', '.join(map(str, others[:4]))}"
        f"{f' (and {len(others) - 4} more)' if len(others) > 4 else ''} "
        "are no tensors")
  return checkpoint, None


def _drop(state_dict: dict[str, Any], dropped: list[str], what: str,
          source: str) -> dict[str, Any]:
  """`state_dict` without the keys `dropped`, said as a warning."""
  if dropped:
    logging.warning("%s: dropped %s %s (a VICReg encoder has none)", source,
                    what, ", ".join(dropped))
  return {k: v for k, v in state_dict.items() if k not in dropped}


def from_torch(state_dict: Mapping[str, Any],
               config: ml_collections.ConfigDict, *,
               source: str = "the state_dict") -> tuple[hk.Params, hk.State]:
  """Our encoder's params and BN state (and the expander's, when the
  state_dict has a projector) from a torch state_dict of any layout above.

  A training checkpoint may be passed whole (unwrap: a DINO checkpoint's
  teacher, the official full checkpoint's model). Tensors are copied as
  float32. Raises WeightsError naming the first key that does not fit the
  model of `config.model` (and how many more do not).
  """
  state_dict, _ = unwrap(state_dict, source)
  prefixes = _prefixes(list(state_dict))
  params_shape, state_shape = _model_shapes(config)
  keys = _keys(params_shape)
  encoder = prefixes[transforms.ENCODER]
  state_dict = _drop(state_dict, [encoder + k for k in keys.HEAD
                                  if encoder + k in state_dict],
                     "the classifier head", source)
  if encoder.endswith(BACKBONE):  # a wrapper's: DINO's head beside it
    dino_head = prefixes[transforms.EXPANDER] + _DINO_HEAD
    state_dict = _drop(state_dict, [k for k in state_dict
                                    if k.startswith(dino_head)],
                       "the DINO head", source)
  projector = prefixes[transforms.EXPANDER] + PROJECTOR
  with_expander = any(k.startswith(projector) for k in state_dict)
  parts = (transforms.ENCODER,
           transforms.EXPANDER) if with_expander else (transforms.ENCODER,)
  entries = sorted(
      ((prefixes[module.split("/")[0]] + key, is_state, module, name,
        _torch_shape(value.shape))
       for key, is_state, module, name, value in _entries(
           params_shape, state_shape, parts)),
      key=lambda entry: keys.torch_order(entry[0]))
  state_dict = _fit_pos_embed(state_dict, prefixes[transforms.ENCODER],
                              dict((e[0], e[4]) for e in entries), source)
  problems = _problems(state_dict, {e[0]: e[4] for e in entries})
  if problems:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    model = _describe(config, with_expander)
    raise WeightsError(
        f"{source} does not fit config.model ({model}): {problems[0]}{more};"
        " set --config.model.* to the file's network")
  trees = ({}, {})
  for key, is_state, module, name, _ in entries:
    value = state_dict[key].detach().cpu().float().numpy()
    trees[is_state].setdefault(module, {})[name] = jnp.asarray(
        _to_haiku_layout(value))
  return trees


def to_torch(params: hk.Params, net_state: hk.State, *,
             expander: bool = False) -> dict[str, Any]:
  """A torch state_dict of the encoder in `params` / `net_state`.

  Keys are torchvision's (`conv1.weight`, `bn1.*`, `layerN.M.convK.weight`,
  `layerN.M.downsample.{0,1}.*`; `num_batches_tracked` written as 0), so
  `model = torchvision.models.resnet18(); model.fc = torch.nn.Identity()`
  loads it with strict=True (for the imagenet stem and width 64; see
  vicreg_haiku/export.py for the others). With `expander`, the keys are the
  official VICReg module's: the encoder under `backbone.` and the expander as
  the official projector, `projector.{0,1,3,...}.*`. Values are exact copies
  (float32 CPU tensors).
  """
  torch = _torch()
  parts = (transforms.ENCODER,
           transforms.EXPANDER) if expander else (transforms.ENCODER,)
  state_dict = {}
  for key, is_state, module, _, value in _entries(params, net_state, parts):
    if module.startswith(transforms.ENCODER) and expander:
      key = BACKBONE + key
    state_dict[key] = torch.from_numpy(np.array(
        _to_torch_layout(np.asarray(value)), np.float32, order="C"))
    if is_state and key.endswith(".running_mean"):
      counter = key.removesuffix("running_mean") + _COUNTER
      state_dict[counter] = torch.tensor(0, dtype=torch.int64)
  if expander and not any(k.startswith(PROJECTOR) for k in state_dict):
    raise WeightsError("expander=True, but the params hold no expander")
  order = _keys(params).torch_order
  return dict(sorted(state_dict.items(), key=lambda kv: order(kv[0])))


def read_state_dict(path: str) -> Mapping[str, Any]:
  """The tensors of a .pth / .pt file (local or gs://), loaded on the CPU.

  torch.load runs with weights_only=True, so the file cannot run code;
  functions the training script pickled from its `__main__` (the official
  full checkpoint's `exclude_bias_and_norm`) load as a placeholder, and a
  DINO checkpoint's `args` as the argparse.Namespace it is. Any other object
  the safe loader does not know is refused (e.g. a whole pickled model: save
  its state_dict() instead).
  """
  torch = _torch()
  if not epath.Path(path).is_file():
    raise WeightsError(f"{path}: no such file")
  data = io.BytesIO(epath.Path(path).read_bytes())
  try:
    unknown = torch.serialization.get_unsafe_globals_in_checkpoint(data)
  except ValueError:  # not torch.save's zip format: torch.load may still read
    unknown = []
  data.seek(0)
  foreign = sorted(n for n in unknown if not n.startswith("__main__.")
                   and n not in _SAFE_GLOBALS)
  if foreign:
    raise WeightsError(
        f"{path} pickles {', '.join(foreign)}, not only tensors: save the "
        "model's state_dict() instead")
  allowed = [_SAFE_GLOBALS.get(name) or (_placeholder, name)
             for name in unknown]
  try:
    with torch.serialization.safe_globals(allowed):
      return torch.load(data, map_location="cpu", weights_only=True)
  except Exception as error:  # pylint: disable=broad-except
    first_line = str(error).strip().splitlines()[0] if str(error) else ""
    raise WeightsError(f"{path} is not a checkpoint torch.load can read "
                       f"({type(error).__name__}: {first_line})") from None


def _placeholder(*args, **kwargs):
  """Stands in for a function the checkpoint names but nobody needs."""
  del args, kwargs
  raise TypeError("a function pickled from the training script's __main__, "
                  "not loaded")


def write_state_dict(state_dict: Mapping[str, Any], path: str) -> int:
  """torch.save to `path` (local or gs://) atomically; returns its bytes."""
  torch = _torch()
  buffer = io.BytesIO()
  torch.save(dict(state_dict), buffer)
  try:
    writers.write_atomically(path, buffer.getvalue())
  except OSError as error:
    raise WeightsError(f"cannot write {path}: {error}") from None
  return buffer.tell()
