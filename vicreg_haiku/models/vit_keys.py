"""timm's ViT key names for our ViT modules (models/vit.py).

timm's `VisionTransformer` state_dict (DINO's backbones use the same names):
cls_token, pos_embed, patch_embed.proj.*, blocks.N.{norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2}.*, then norm.* (token pooling) or
fc_norm.* (global_pool="avg"), and the classifier head.* we drop.
"""

_LAYERS = {"attn_qkv": "attn.qkv", "attn_proj": "attn.proj",
           "mlp_fc1": "mlp.fc1", "mlp_fc2": "mlp.fc2"}
# The classifier a timm ViT has and a VICReg encoder has not.
HEAD = ("head.weight", "head.bias")
# torch's registration order of the names, for listing keys as timm does.
_ORDER = {name: rank for rank, name in enumerate((
    "module", "backbone", "cls_token", "pos_embed", "patch_embed", "blocks",
    "norm1", "attn", "qkv", "proj", "norm2", "mlp", "fc1", "fc2", "norm",
    "fc_norm", "head", "projector", "weight", "bias", "running_mean",
    "running_var", "num_batches_tracked"))}


def torch_module(path: list[str]) -> str:
  """timm's name of an encoder module below "encoder/", e.g.
  ["block_3", "attn_qkv"] -> blocks.3.attn.qkv."""
  if path[0] == "patch_embed":
    return "patch_embed.proj"
  if path[0] in ("norm", "fc_norm"):
    return path[0]
  block = path[0].removeprefix("block_")
  return f"blocks.{block}.{_LAYERS.get(path[1], path[1])}"


def torch_order(key: str) -> list[tuple[int, int]]:
  """Sorts keys as timm lists them: block numbers by value, names by their
  place in the model."""
  return [(0, int(token)) if token.isdigit()
          else (1, _ORDER.get(token, len(_ORDER)))
          for token in key.split(".")]
