"""AdamW and the pretraining optimizer choice, against torch.optim.AdamW.

The reference is torch itself: AdamW on the same tree, the no-decay
parameters in a group of weight_decay 0 (DINO's and VICRegL's parameter
groups), each step's lr and weight decay set on the groups as DINO's
training loop sets them, and torch.nn.utils.clip_grad_norm_ before the step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from vicreg_haiku.evaluation import classifier
from vicreg_haiku.training import optimizers
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import defaults

# Names AdamW leaves undecayed: biases, norms (BatchNorm and LayerNorm
# params are both scale / offset), a ViT's position embeddings and class
# token. "w" of any rank is decayed.
_NO_DECAY = {"b", "scale", "offset", "pos_embed", "cls_token"}


def _params(rng):
  return {
      "encoder": {"cls_token": rng.normal(size=(1, 1, 4)),
                  "pos_embed": rng.normal(size=(1, 5, 4))},
      "encoder/patch_embed": {"w": rng.normal(size=(2, 2, 3, 4)),
                              "b": rng.normal(size=(4,))},
      "encoder/block_0/norm1": {"scale": 1 + rng.normal(size=(4,)),
                                "offset": rng.normal(size=(4,))},
      "expander/batch_norm_0": {"scale": 1 + rng.normal(size=(1, 6)),
                                "offset": rng.normal(size=(1, 6))},
      "expander/linear_1": {"w": rng.normal(size=(4, 6))},
      "odd": {"w": rng.normal(size=(3,))},  # a 1-d "w" is still decayed
  }


def _grads_seq(rng, params, steps, scale):
  return [jax.tree.map(lambda p: scale * rng.normal(size=p.shape), params)
          for _ in range(steps)]


def _torch_adamw(params, grads_seq, lrs, wds, clip):
  """torch.optim.AdamW on float64 copies; returns the params after."""
  leaves = {(m, k): torch.tensor(np.asarray(v, np.float64), requires_grad=True)
            for m, d in params.items() for k, v in d.items()}
  decay = [t for (m, k), t in leaves.items() if k not in _NO_DECAY]
  rest = [t for (m, k), t in leaves.items() if k in _NO_DECAY]
  opt = torch.optim.AdamW([{"params": decay}, {"params": rest,
                                               "weight_decay": 0.0}],
                          lr=1.0, betas=(0.9, 0.999), eps=1e-8)
  for grads, lr, wd in zip(grads_seq, lrs, wds):
    for (m, k), t in leaves.items():
      t.grad = torch.tensor(np.asarray(grads[m][k], np.float64))
    if clip is not None:
      torch.nn.utils.clip_grad_norm_(list(leaves.values()), clip)
    for group in opt.param_groups:
      group["lr"] = lr
    opt.param_groups[0]["weight_decay"] = wd
    opt.step()
  return {(m, k): t.detach().numpy() for (m, k), t in leaves.items()}


def _ours(optimizer, params, grads_seq):
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = optimizer.init(params)

  @jax.jit
  def step(params, state, grads):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for grads in grads_seq:
    params, state = step(params, state, jax.tree.map(
        lambda x: jnp.asarray(x, jnp.float32), grads))
  return params


def _assert_close(ours, theirs):
  for (m, k), value in theirs.items():
    np.testing.assert_allclose(ours[m][k], value, rtol=2e-5, atol=2e-6,
                               err_msg=f"{m}/{k}")


@pytest.mark.parametrize("steps", [1, 7])
def test_adamw_matches_torch_constant_rates(steps):
  rng = np.random.default_rng(steps)
  params = _params(rng)
  grads_seq = _grads_seq(rng, params, steps, scale=1.0)
  ours = _ours(optimizers.adamw(0.01, weight_decay=0.3), params, grads_seq)
  _assert_close(ours, _torch_adamw(params, grads_seq, [0.01] * steps,
                                   [0.3] * steps, None))


@pytest.mark.parametrize("clip", [None, 0.5, 1e3])
def test_adamw_matches_torch_with_schedules_and_clipping(clip):
  """The warm-up cosine lr, DINO's cosine weight decay 0.04 -> 0.4, and the
  global-norm clip (0.5: every step clipped; 1e3: none)."""
  steps = 9
  rng = np.random.default_rng(11)
  params = _params(rng)
  grads_seq = _grads_seq(rng, params, steps, scale=3.0)
  lr = optimizers.warmup_cosine(5e-3, 512, 3, steps)
  wd = optimizers.cosine_weight_decay(0.04, 0.4, steps)
  ours = _ours(optimizers.adamw(lr, weight_decay=wd, clip_grad_norm=clip),
               params, grads_seq)
  lrs = [float(lr(t)) for t in range(steps)]
  wds = [float(wd(t)) for t in range(steps)]
  np.testing.assert_allclose(  # DINO's cosine_scheduler, from its formula
      wds, [0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * t / steps))
            for t in range(steps)], rtol=1e-6)
  _assert_close(ours, _torch_adamw(params, grads_seq, lrs, wds, clip))


def test_the_decay_mask_is_by_name():
  mask = optimizers.decay_mask(_params(np.random.default_rng(0)))
  assert {(m, k) for m, d in mask.items() for k, v in d.items() if v} == {
      ("encoder/patch_embed", "w"), ("expander/linear_1", "w"), ("odd", "w")}


def _config(encoder, optimizer="auto"):
  config = defaults.base_config()
  config.model.encoder = encoder
  config.pretrain.optimizer = optimizer
  config.pretrain.update(epochs=2, warmup_epochs=1)
  return config


@pytest.mark.parametrize("encoder, optimizer, expected", [
    ("resnet18", "auto", "lars"), ("vit_small", "auto", "adamw"),
    ("resnet50", "adamw", "adamw"), ("vit_tiny", "lars", "lars")])
def test_the_optimizer_is_chosen_by_the_encoder_unless_named(
    encoder, optimizer, expected):
  assert optimizers.optimizer_name(_config(encoder, optimizer),
                                   "pretrain") == expected


def test_a_vit_trains_at_adamws_rate_not_larss():
  """--config.model.encoder=vit_small alone: AdamW's lr and state."""
  optimizer, schedule = pretrain_step.make_optimizer(_config("vit_small"), 10)
  assert float(schedule(10)) == pytest.approx(5e-4 * 256 / 256)
  params = _params(np.random.default_rng(0))
  state = optimizer.init(params)
  assert optax.tree.get_all_with_path(state, "nu")  # Adam's second moment
  lars_optimizer, lars_schedule = pretrain_step.make_optimizer(
      _config("resnet18"), 10)
  assert float(lars_schedule(10)) == pytest.approx(0.2)
  assert not optax.tree.get_all_with_path(lars_optimizer.init(params), "nu")


@pytest.mark.parametrize("encoder, expected", [("resnet18", "sgd"),
                                               ("vit_small", "adamw")])
def test_finetune_and_supervised_choose_by_the_encoder(encoder, expected):
  config = _config(encoder)
  config.finetune.adamw.lr_backbone = 1e-4
  for phase in classifier.PHASES:
    assert optimizers.optimizer_name(config, phase) == expected
  rates = classifier.rates(config, "finetune")
  assert float(rates["lr_backbone"]) == pytest.approx(
      1e-4 if expected == "adamw" else 0.01)
  config.finetune.optimizer = "sgd"
  assert optimizers.optimizer_name(config, "finetune") == "sgd"


def test_a_vit_finetunes_with_adamw_as_torch():
  """Two steps of the fine-tune optimizer (encoder and head groups, cosine
  to 0) against torch.optim.AdamW with the same per-step rates."""
  config = _config("vit_small")
  config.finetune.update(epochs=1, batch_size=256)
  config.finetune.adamw.update(lr_backbone=0.01, lr_head=0.03,
                               weight_decay=0.2)
  rng = np.random.default_rng(3)
  params = {"encoder/block_0/mlp_fc1": {"w": rng.normal(size=(3, 4)),
                                        "b": rng.normal(size=(4,))},
            "head": {"w": rng.normal(size=(4, 2)), "b": rng.normal(size=(2,))}}
  grads_seq = _grads_seq(rng, params, 2, scale=1.0)
  ours = _ours(classifier.make_optimizer(config, "finetune",
                                         classifier.rates(config, "finetune")),
               params, grads_seq)
  total = classifier.steps(config, "finetune")[1]
  for module, base in (("encoder/block_0/mlp_fc1", 0.01), ("head", 0.03)):
    lrs = [base * 0.5 * (1 + np.cos(np.pi * t / total)) for t in range(2)]
    _assert_close(ours, _torch_adamw({module: params[module]},
                                     [{module: g[module]} for g in grads_seq],
                                     lrs, [0.2, 0.2], None))
