"""ViT encoders against timm, on random weights carried over by from_torch.

The reference is timm's VisionTransformer itself (a test extra, like
torchvision), tiny (depth 2, width 32, 32 px, patch 8) so the suite stays
fast; the layout is the same at every size. LayerNorm params, the class
token and position embeddings are redrawn away from their initial 1 / 0 /
~0, so a dropped or swapped mapping of any of them changes the outputs.
"""

import argparse
import functools
import re
import warnings

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm
import torch
from timm.layers import pos_embed as timm_pos_embed
from torch import nn

from test_config import load_config

from vicreg_haiku import config_checks
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.models import precision
from vicreg_haiku.models import torch_weights
from vicreg_haiku.models import transforms
from vicreg_haiku.models import vit
from vicreg_haiku.utils import defaults
from vicreg_haiku.utils import errors

WIDTH, DEPTH, HEADS, PATCH, SIZE = 32, 2, 2, 8, 32
# Largest |ours - timm| / max |timm| of the features. Measured here (both
# pools, 24/32/48 px): timm's own float32 features differ from its float64
# ones by 0.9-3.9e-7, ours from timm's float32 by 0.9-3.2e-7 and from its
# float64 by 0.9-4.3e-7; a wrong mapping is off by far more (see the
# closing note of the ViT branch for the mutations tried).
TOLERANCE = 2e-6


def relative_error(ours, theirs) -> float:
  theirs = np.asarray(theirs, np.float64)
  return float(np.max(np.abs(np.asarray(ours, np.float64) - theirs))
               / np.max(np.abs(theirs)))


def tiny_vit(**kwargs):
  """The builder `transforms.VITS` holds, at test size."""
  return vit.VisionTransformer(WIDTH, DEPTH, HEADS, **kwargs)


@pytest.fixture
def tiny(monkeypatch):
  """config.model.encoder="vit_tiny" builds the tiny ViT in this test."""
  monkeypatch.setitem(transforms.VITS, "vit_tiny", tiny_vit)


def config_of(pool: str = "token", size: int = SIZE):
  config = defaults.base_config()
  config.model.update(dict(encoder="vit_tiny", patch_size=PATCH, pool=pool,
                           expander_dims=(16, 8)))
  config.dataset.image_size = size
  return config


def timm_vit(pool: str = "token", size: int = SIZE, num_classes: int = 0,
             seed: int = 0) -> nn.Module:
  """A random timm ViT, its norms and tokens redrawn (see the docstring)."""
  torch.manual_seed(seed)
  model = timm.models.vision_transformer.VisionTransformer(
      img_size=size, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH,
      num_heads=HEADS, num_classes=num_classes,
      global_pool="avg" if pool == "mean" else "token",
      dynamic_img_size=True)
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for layer in model.modules():
      if isinstance(layer, nn.LayerNorm):
        layer.weight.uniform_(0.5, 1.5, generator=generator)
        layer.bias.uniform_(-0.5, 0.5, generator=generator)
    model.cls_token.normal_(0, 1, generator=generator)
    model.pos_embed.normal_(0, 1, generator=generator)
  return model


def timm_features(model: nn.Module, images: np.ndarray, train: bool):
  model.train(train)
  with torch.no_grad():
    return model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


def images_of(size: int, seed: int = 0, batch: int = 3) -> np.ndarray:
  return np.random.default_rng(seed).normal(
      size=(batch, size, size, 3)).astype(np.float32)


@functools.cache
def encoder_passes(pool: str):
  """jit: (params, images) -> (eval features, train-mode features)."""
  net = hk.transform(lambda images, is_training: tiny_vit(
      patch_size=PATCH, image_size=SIZE, pool=pool,
      name=transforms.ENCODER)(images, is_training))
  return jax.jit(lambda params, images: (net.apply(params, None, images, False),
                                         net.apply(params, None, images, True)))


@pytest.mark.parametrize("pool", ["token", "mean"])
@pytest.mark.parametrize("size", [SIZE, 48, 24])
def test_features_equal_timms(tiny, pool, size):
  """Built for 32 px; at 48 px (6x6 patches) and 24 px (3x3) the position
  embeddings are resampled, as timm's dynamic_img_size resamples them."""
  model = timm_vit(pool)
  params, _ = torch_weights.from_torch(model.state_dict(), config_of(pool))
  images = images_of(size)
  ours_eval, ours_train = encoder_passes(pool)(params, images)
  assert ours_eval.shape == (3, WIDTH)
  assert relative_error(ours_eval, timm_features(model, images, False)
                        ) <= TOLERANCE
  assert relative_error(ours_train, timm_features(model, images, True)
                        ) <= TOLERANCE


def test_gradients_equal_timms(tiny):
  """The backward pass, whose residual-stream gradient XLA:CPU is made to
  keep in memory (layers.cotangent_in_memory): the parameter and image
  gradients of <features, random cotangent> against timm's autograd, the
  parameter gradients mapped to our layout as weights are. Measured here:
  0.5-4.3e-7 relative, as the features."""
  model = timm_vit()
  params, _ = torch_weights.from_torch(model.state_dict(), config_of())
  images = images_of(SIZE)
  cotangent = np.random.default_rng(1).normal(size=(3, WIDTH)).astype(
      np.float32)
  net = hk.transform(lambda images: tiny_vit(
      patch_size=PATCH, image_size=SIZE, name=transforms.ENCODER)(images,
                                                                    True))
  ours = jax.jit(jax.grad(
      lambda p, x: jnp.sum(net.apply(p, None, x) * cotangent), (0, 1)))(
          params, images)
  torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  torch_images.requires_grad_(True)
  model.train()
  (model(torch_images) * torch.from_numpy(cotangent)).sum().backward()
  theirs, _ = torch_weights.from_torch(
      {name: p.grad for name, p in model.named_parameters()}, config_of())
  jax.tree.map(lambda a, b: np.testing.assert_array_less(
      relative_error(a, b), TOLERANCE), ours[0], theirs)
  assert relative_error(ours[1], torch_images.grad.numpy().transpose(
      0, 2, 3, 1)) <= TOLERANCE


def test_no_fusion_of_the_gradient_grows_with_depth():
  """XLA:CPU fused the residual stream's gradient, a chain of adds over the
  blocks, into its consumers: the largest fusion read every later block's
  terms (84 operands at depth 4, 158 at depth 8; 39% of a depth-12 ViT's
  step). With each block's input gradient kept in memory it is the same
  at every depth."""

  def largest_fusion(depth: int) -> int:
    net = hk.transform(lambda images: vit.VisionTransformer(
        WIDTH, depth, HEADS, patch_size=PATCH, image_size=SIZE)(images, True))
    images = jnp.asarray(images_of(SIZE))
    params = net.init(jax.random.key(0), images)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(net.apply(p, None, images))))
    text = grad.lower(params).compile().as_text()
    bodies = re.findall(r"\n%fused_computation[^\n]*\{\n(.*?)\n\}", text,
                        re.S)
    return max(body.count(" parameter(") for body in bodies)

  assert largest_fusion(8) == largest_fusion(4)


@pytest.mark.parametrize("old, new", [(4, 6), (4, 3), (14, 9), (2, 7),
                                      (7, 7)])
def test_position_embeddings_resample_as_timms(old, new):
  """Upsampling and downsampling (where antialiasing widens the kernel)."""
  table = np.random.default_rng(old * new).normal(
      size=(1, 1 + old * old, 5)).astype(np.float32)
  theirs = timm_pos_embed.resample_abs_pos_embed(
      torch.from_numpy(table), [new, new], num_prefix_tokens=1).numpy()
  ours = vit.resample_pos_embed(jnp.asarray(table), (new, new))
  assert ours.shape == theirs.shape
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_weights_of_another_grid_are_resampled_on_import(tiny):
  """A 48 px file into a 32 px config: timm's resample, once, at load."""
  model = timm_vit(size=48)
  params, _ = torch_weights.from_torch(model.state_dict(), config_of())
  theirs = timm_pos_embed.resample_abs_pos_embed(model.pos_embed.detach(),
                                                 [4, 4]).numpy()
  np.testing.assert_allclose(params["encoder"]["pos_embed"], theirs,
                             rtol=0, atol=1e-5)


@pytest.mark.parametrize("pool", ["token", "mean"])
def test_export_loads_into_timm_strictly_and_gives_our_features(tiny, pool):
  """Our own random init -> to_torch -> timm strict=True -> same features."""
  net = hk.transform(lambda images: tiny_vit(
      patch_size=PATCH, image_size=SIZE, pool=pool,
      name=transforms.ENCODER)(images, False))
  params = net.init(jax.random.key(1), images_of(SIZE))
  # Away from the init's ~0 class token and 1 / 0 norms.
  params = jax.tree.map(
      lambda p: p + 0.3 * jax.random.normal(jax.random.key(p.size), p.shape),
      params)
  state_dict = torch_weights.to_torch(params, {})
  model = timm_vit(pool, seed=5)
  model.load_state_dict(state_dict, strict=True)
  images = images_of(SIZE, seed=2)
  assert relative_error(encoder_passes(pool)(params, images)[0],
                        timm_features(model, images, False)) <= TOLERANCE
  # And back: exactly the same arrays.
  again, _ = torch_weights.from_torch(state_dict, config_of(pool))
  jax.tree.map(np.testing.assert_array_equal, again, params)


def test_keys_are_listed_as_timm_lists_them(tiny):
  params, _ = torch_weights.from_torch(timm_vit().state_dict(), config_of())
  assert list(torch_weights.to_torch(params, {})) == list(
      timm_vit().state_dict())


def test_the_head_is_dropped_and_said(tiny, caplog):
  state_dict = timm_vit(num_classes=10).state_dict()
  params, _ = torch_weights.from_torch(state_dict, config_of(),
                                       source="vit.pth")
  assert "dropped the classifier head head.weight, head.bias" in caplog.text
  assert "encoder/norm" in params


class MultiCropWrapper(nn.Module):
  """DINO's (utils.py): the encoder as `backbone`, the DINO head `head`."""

  def __init__(self, backbone: nn.Module, head: nn.Module):
    super().__init__()
    self.backbone, self.head = backbone, head


def dino_head(in_dim: int, out_dim: int = 64, hidden: int = 48,
              bottleneck: int = 16) -> nn.Module:
  """DINO's DINOHead (vision_transformer.py), small: a 3-layer MLP and the
  weight-normed last layer (weight_g, weight_v), as DINO builds it."""
  head = nn.Module()
  head.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(),
                           nn.Linear(hidden, hidden), nn.GELU(),
                           nn.Linear(hidden, bottleneck))
  with warnings.catch_warnings():  # DINO's (deprecated) weight_norm
    warnings.simplefilter("ignore", FutureWarning)
    head.last_layer = nn.utils.weight_norm(
        nn.Linear(bottleneck, out_dim, bias=False))
  return head


def dino_checkpoint(student: nn.Module, teacher: nn.Module, ddp: str = ""):
  """main_dino.py's save_dict: the student under DDP's `module.`, the
  teacher under it only where it has BatchNorm (`ddp`; a ViT has none)."""
  return {
      "student": {f"module.{k}": v for k, v in student.state_dict().items()},
      "teacher": {f"{ddp}{k}": v for k, v in teacher.state_dict().items()},
      "optimizer": torch.optim.AdamW(student.parameters()).state_dict(),
      "epoch": 7,
      "args": argparse.Namespace(arch="vit_tiny", patch_size=PATCH, lr=5e-4),
      "dino_loss": {"center": torch.zeros(1, 64)},
  }


def test_a_dino_training_checkpoint_gives_its_teachers_backbone(
    tiny, tmp_path, capsys, caplog):
  """init_from DINO's checkpoint.pth: the teacher's backbone, said once, the
  DINO head dropped; its features are the teacher's in timm."""
  student = MultiCropWrapper(timm_vit(seed=1), dino_head(WIDTH))
  teacher = MultiCropWrapper(timm_vit(seed=2), dino_head(WIDTH))
  path = tmp_path / "checkpoint.pth"
  torch.save(dino_checkpoint(student, teacher), path)
  config = config_of()
  config.model.init_from = str(path)
  weights = pretrained.import_init_from(config)
  assert capsys.readouterr().out == (
      f"config.model.init_from={path}: the teacher's backbone of a DINO "
      "training checkpoint (epoch 7): the network DINO evaluates; the "
      "student is not read\n")
  assert (f"{path}: dropped the DINO head head.mlp.0.weight, head.mlp.0.bias,"
          in caplog.text)
  images = images_of(SIZE, seed=3)
  ours = encoder_passes("token")(weights.params, images)[0]
  assert relative_error(ours, timm_features(teacher.backbone, images,
                                            False)) <= TOLERANCE
  assert relative_error(ours, timm_features(student.backbone, images,
                                            False)) > 0.1


def test_a_checkpoint_without_a_network_entry_is_refused(tiny):
  """A dict of other things than tensors with no "teacher" or "model"."""
  checkpoint = dino_checkpoint(timm_vit(), timm_vit())
  del checkpoint["teacher"]
  with pytest.raises(torch_weights.WeightsError,
                     match=r"^ckpt.pth is neither a state_dict nor a training "
                     r"checkpoint with a 'teacher' or 'model' entry: its "
                     r"student, optimizer, epoch, args \(and 1 more\) are no "
                     r"tensors$"):
    torch_weights.from_torch(checkpoint, config_of(), source="ckpt.pth")


def test_a_missing_key_is_refused_by_name(tiny):
  state_dict = timm_vit().state_dict()
  del state_dict["blocks.1.attn.qkv.bias"]
  with pytest.raises(torch_weights.WeightsError,
                     match=r"missing blocks\.1\.attn\.qkv\.bias \(shape "
                     r"\[96\]\)"):
    torch_weights.from_torch(state_dict, config_of())


def test_token_weights_into_a_mean_pool_config_are_refused(tiny):
  """timm's avg pool has fc_norm where the token pool has norm."""
  with pytest.raises(torch_weights.WeightsError,
                     match=r"pool=mean\): missing fc_norm\.weight"):
    torch_weights.from_torch(timm_vit().state_dict(), config_of("mean"))


def _drop(x, rate, is_training):
  return hk.transform(lambda: vit.drop_path(x, rate, is_training))


def test_drop_path_drops_whole_examples_and_scales_the_rest():
  x = jnp.ones((4000, 3, 2))
  out = _drop(x, 0.25, True).apply({}, jax.random.key(0))
  per_example = np.asarray(out[:, 0, 0])
  assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
  assert np.all(out == per_example[:, None, None])
  assert abs(np.mean(per_example == 0) - 0.25) < 0.03


def test_drop_path_is_a_function_of_the_key_and_off_in_evaluation():
  x = jnp.ones((64, 2))
  draw = _drop(x, 0.5, True)
  first = draw.apply({}, jax.random.key(3))
  np.testing.assert_array_equal(first, draw.apply({}, jax.random.key(3)))
  assert np.any(first != draw.apply({}, jax.random.key(4)))
  np.testing.assert_array_equal(_drop(x, 0.5, False).apply({}, None), x)


def test_the_step_key_is_folded_from_seed_and_step():
  config = config_of()
  assert transforms.step_key(config, "pretrain", 3) is None  # drop_path 0
  config.model.drop_path = 0.1
  key = transforms.step_key(config, "pretrain", 3)
  assert jax.random.key_data(key).tolist() == jax.random.key_data(
      transforms.step_key(config, "pretrain", 3)).tolist()
  for other in (transforms.step_key(config, "pretrain", 4),
                transforms.step_key(config, "finetune", 3)):
    assert jax.random.key_data(key).tolist() != jax.random.key_data(
        other).tolist()
  config.model.encoder = "resnet18"
  assert transforms.step_key(config, "pretrain", 3) is None


@pytest.mark.parametrize("change, message", [
    (dict(image_size=36), "image_size=36 is not a multiple of "
     "config.model.patch_size=8"),
    (dict(pool="max"), r"config.model.pool='max' is not one of"),
    (dict(drop_path=1.0), r"config.model.drop_path=1.0 must lie in \[0, 1\)"),
    (dict(patch_size=0), "config.model.patch_size=0 must be positive"),
])
def test_bad_vit_settings_are_refused_in_one_line(change, message):
  config = config_of()
  if "image_size" in change:
    config.dataset.image_size = change.pop("image_size")
  config.model.update(change)
  with pytest.raises(errors.ConfigError, match=message) as raised:
    config_checks.validate(config, device_count=1)
  assert "\n" not in str(raised.value)


def test_vit_small_patch16_equals_timms_at_224_and_160_px():
  """The real size: timm's vit_small_patch16_224 (random, norms and tokens
  redrawn) through from_torch, at 224 px and at 160 px (10x10 patches,
  position embeddings resampled)."""
  torch.manual_seed(0)
  model = timm.create_model("vit_small_patch16_224", pretrained=False,
                            num_classes=0, dynamic_img_size=True)
  with torch.no_grad():
    for layer in model.modules():
      if isinstance(layer, nn.LayerNorm):
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    model.cls_token.normal_()
    model.pos_embed.normal_()
  config = defaults.base_config()
  config.model.update(encoder="vit_small", patch_size=16,
                      expander_dims=(16, 8))
  config.dataset.image_size = 224
  params, _ = torch_weights.from_torch(model.state_dict(), config)
  net = hk.transform(lambda images: transforms.make_encoder(config)(
      images, is_training=False))
  for size in (224, 160):
    images = images_of(size, batch=2)
    ours = jax.jit(net.apply)(params, None, images)
    assert ours.shape == (2, 384)
    assert relative_error(ours, timm_features(model, images, False)
                          ) <= TOLERANCE, size


@pytest.mark.parametrize("size, expected", [(224, 16), (96, 8), (64, 8),
                                            (32, 4), (16, 2), (100, 4)])
def test_the_patch_size_follows_the_image_size_unless_set(size, expected):
  config = config_of(size=size)
  config.model.patch_size = None
  assert transforms.patch_size(config) == expected
  config.model.patch_size = 7
  assert transforms.patch_size(config) == 7


@pytest.mark.parametrize("name", ["digits", "folder"])
def test_the_small_configs_take_a_vit_as_they_are(name):
  config = load_config(name)
  config.dataset.folder = "/data/photos"
  config.model.encoder = "vit_small"
  config_checks.validate(config, device_count=1)


def test_an_image_too_small_for_any_patch_is_refused():
  config = config_of(size=8)
  config.model.patch_size = None
  with pytest.raises(errors.ConfigError,
                     match=r"image_size=8: no patch size of 16, 8, 4 or 2 "
                     r"cuts it into at least 8 x 8 patches; set "
                     r"--config.model.patch_size"):
    config_checks.validate(config, device_count=1)


def test_bfloat16_computes_blocks_in_bfloat16_and_norms_in_float32():
  """Under precision=bfloat16: params stay float32, the attention and MLP
  run in bfloat16, every LayerNorm computes in float32, features come out
  float32 and near the float32 ones."""
  seen = {}

  def forward(images):

    def interceptor(next_f, args, kwargs, context):
      out = next_f(*args, **kwargs)
      if context.method_name == "__call__":
        name = type(context.module).__name__
        seen.setdefault(name, set()).add(jnp.asarray(args[0]).dtype)
      return out

    with hk.intercept_methods(interceptor):
      return tiny_vit(patch_size=PATCH, image_size=SIZE,
                      name=transforms.ENCODER)(images, False)

  net = hk.transform(forward)
  images = images_of(SIZE)
  params = net.init(jax.random.key(0), images)
  reference = net.apply(params, None, images)
  try:
    precision.set_compute_dtype("bfloat16")
    seen.clear()
    features = net.apply(params, None, images)
  finally:
    precision.set_compute_dtype("float32")
  assert features.dtype == jnp.float32
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  # What each module's __call__ computes on (after its policy's cast).
  assert seen["Linear"] == {jnp.dtype("bfloat16")}
  assert seen["_PatchEmbed"] == {jnp.dtype("bfloat16")}
  assert seen["LayerNorm"] == {jnp.dtype("float32")}
  assert relative_error(features, reference) < 3e-2


def test_another_vit_workdir_of_another_shape_is_refused_in_one_line(
    tmp_path):
  """init_from / a transfer probe of a ViT workdir: its depth, patch and
  position grid must be this config's (Haiku would stop with a shape
  traceback, or leave blocks the other run lacks at random init)."""
  other = load_config("digits")
  other.model.encoder, other.model.depth = "vit_tiny", 2
  (tmp_path / "config.json").write_text(other.to_json())
  ours = load_config("digits")
  ours.model.encoder = "vit_tiny"
  with pytest.raises(torch_weights.WeightsError,
                     match=r"config.model.depth=None, but .* with 2: set"):
    pretrained._restore_other(ours, str(tmp_path))  # pylint: disable=protected-access
  ours.model.depth, ours.model.patch_size = 2, 2
  ours.dataset.image_size = 32  # a 16 x 16 grid, the other's 8 x 8
  with pytest.raises(errors.ConfigError,
                     match=r"built for 16 px .*image_size=32: set "
                     r"--config.dataset.image_size=16"):
    pretrained._restore_other(ours, str(tmp_path))  # pylint: disable=protected-access
