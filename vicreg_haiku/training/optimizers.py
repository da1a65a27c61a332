"""LARS in the official VICReg update order, AdamW as torch's, the official
LR schedule, and the guard that drops a non-finite update."""

import math

import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import optax

from vicreg_haiku.models import transforms

# Haiku names of the parameters LARS leaves alone: biases ("b") and
# BatchNorm scale/offset. Selected by name, never by ndim.
_NO_LARS_PARAMS = frozenset({"b", "scale", "offset"})


def lars_mask(params: hk.Params) -> hk.Params:
  """True for the parameters that get weight decay and the trust ratio."""
  return hk.data_structures.map(
      lambda module, name, value: name not in _NO_LARS_PARAMS, params)


def scale_by_trust_ratio_with_decay(
    weight_decay: float, trust_coefficient: float
) -> optax.GradientTransformation:
  """g <- g + wd * p, then g <- eta * |p| / |g| * g, on LARS-able params only."""

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params):
    if params is None:
      raise ValueError("LARS needs the params to compute the trust ratio")

    def one(g, p, use_lars):
      if not use_lars:
        return g
      g = g + weight_decay * p
      p_norm = jnp.linalg.norm(p)
      g_norm = jnp.linalg.norm(g)
      ratio = jnp.where((p_norm > 0) & (g_norm > 0),
                        trust_coefficient * p_norm / g_norm, 1.0)
      return g * ratio

    return jax.tree.map(one, updates, params, lars_mask(params)), state

  return optax.GradientTransformation(init_fn, update_fn)


def lars(learning_rate: float | optax.Schedule, *, weight_decay: float,
         momentum: float = 0.9,
         trust_coefficient: float = 0.001) -> optax.GradientTransformation:
  """LARS as in the official VICReg code.

  Order: weight decay into the gradient, trust ratio (1 where either norm is
  0), momentum m <- momentum * m + g, then p <- p - lr * m. Biases and
  BatchNorm scale/offset get neither weight decay nor the trust ratio (they
  still get momentum and the learning rate). Note `optax.lars` applies the
  learning rate before the momentum and decays every parameter by default.
  """
  return optax.chain(
      scale_by_trust_ratio_with_decay(weight_decay, trust_coefficient),
      optax.trace(decay=momentum, nesterov=False),
      optax.scale_by_learning_rate(learning_rate),
  )


# Haiku names of the parameters AdamW does not decay: biases, norms' scale and
# offset (BatchNorm and LayerNorm), a ViT's position embeddings and class
# token (timm's no_weight_decay() and its optimizer factory). DINO's
# get_params_groups and VICRegL's add_weight_decay exempt biases and 1-D
# params only, so they do decay the position embeddings and the class token:
# a difference from both recipes.
_NO_DECAY_PARAMS = frozenset({"b", "scale", "offset", "pos_embed",
                              "cls_token"})


def decay_mask(params: hk.Params) -> hk.Params:
  """True for the parameters AdamW decays. Selected by name, never by ndim."""
  return hk.data_structures.map(
      lambda module, name, value: name not in _NO_DECAY_PARAMS, params)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
  """torch.nn.utils.clip_grad_norm_: g <- g * min(1, max / (|g| + 1e-6)),
  |g| the norm of all gradients together (optax's has no 1e-6)."""

  def update_fn(updates, state, params=None):
    del params
    scale = jnp.minimum(1.0, max_norm / (optax.tree.norm(updates) + 1e-6))
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(),
                                      update_fn)


def cosine_weight_decay(start: float, end: float,
                        total_steps: int) -> optax.Schedule:
  """DINO's cosine_scheduler of the weight decay: from `start` at step 0 to
  `end` at `total_steps`, end + (start - end) * (1 + cos(pi t / T)) / 2."""

  def schedule(step):
    progress = jnp.asarray(step, jnp.float32) / max(total_steps, 1)
    return end + 0.5 * (start - end) * (1 + jnp.cos(math.pi * progress))

  return schedule


def adamw(learning_rate: float | optax.Schedule, *,
          weight_decay: float | optax.Schedule, b1: float = 0.9,
          b2: float = 0.999, eps: float = 1e-8,
          clip_grad_norm: float | None = None
          ) -> optax.GradientTransformation:
  """torch.optim.AdamW over Haiku params (decoupled weight decay, bias-
  corrected moments), the decay masked by `decay_mask`.

  Per step: optional clipping of the global gradient norm (as torch's
  clip_grad_norm_), then p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)
  with lr and wd the schedules' values at the step: torch's
  p <- p * (1 - lr * wd) - lr * m_hat / (sqrt(v_hat) + eps).
  """
  clip = ([clip_by_global_norm(clip_grad_norm)]
          if clip_grad_norm is not None else [])
  return optax.chain(
      *clip,
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
      optax.add_decayed_weights(weight_decay, mask=decay_mask),
      optax.scale_by_learning_rate(learning_rate),
  )


# What optimizer="auto" trains a ResNet with, by phase: the official VICReg
# recipe's LARS to pretrain, SGD + momentum to fine-tune.
_RESNET_OPTIMIZERS = {"pretrain": "lars", "finetune": "sgd",
                      "supervised": "sgd"}


def optimizer_name(config: ml_collections.ConfigDict, phase: str) -> str:
  """config[phase].optimizer, "auto" resolved by the encoder: AdamW for a
  ViT (DINO and DeiT train ViTs with it, the VICReg authors' VICRegL its
  ConvNeXts; stable-pretraining reports LARS collapsing BYOL and Barlow
  Twins on ViTs, and SGD's rates would wreck one; configs/imagenet_vit.py
  has the sources), the phase's _RESNET_OPTIMIZERS entry for a ResNet."""
  name = config[phase].optimizer
  if name != "auto":
    return name
  return "adamw" if transforms.is_vit(config) else _RESNET_OPTIMIZERS[phase]


# The VICReg paper's base learning rates by batch size (its batch-size
# ablation, LARS, peak = base_lr * batch / 256); larger batches: 0.3.
_PAPER_BASE_LR = ((128, 0.8), (256, 0.5), (512, 0.4))


def paper_base_lr(batch_size: int) -> float:
  """The paper's base learning rate for `batch_size` (the nearest row at or
  above it; 0.8 below 128, 0.3 above 512)."""
  for size, lr in _PAPER_BASE_LR:
    if batch_size <= size:
      return lr
  return 0.3


def warmup_cosine(base_lr: float, batch_size: int, warmup_steps: int,
                  total_steps: int) -> optax.Schedule:
  """The official schedule: peak = base_lr * batch_size / 256, linear warm-up
  from 0 over `warmup_steps`, then cosine from the peak to 0.001 * peak at
  `total_steps`."""
  peak = base_lr * batch_size / 256
  end = 0.001 * peak
  decay_steps = max(total_steps - warmup_steps, 1)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = peak * step / max(warmup_steps, 1)
    progress = jnp.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
    q = 0.5 * (1 + jnp.cos(math.pi * progress))
    return jnp.where(step < warmup_steps, warm, peak * q + end * (1 - q))

  return schedule


def keep_if_finite(state: transforms.TrainState, new: transforms.TrainState,
                   loss, grads, updates):
  """`new` when the loss, gradients and updates are finite, else `state` one
  step on (the loop then stops or counts the step). The update is checked
  too: a finite gradient times a huge learning rate overflows.

  A skipped step leaves params, BN state and the optimizer's moments alone
  but advances the step and every `count` in the optimizer state with it:
  schedules read that count, so the next update's learning rate is
  schedule(step), the `lr` the step logs, as when a PyTorch run skips
  optimizer.step() but still steps its LR scheduler.

  Returns (state, metrics: finite, grad_norm, update_norm).
  """
  grad_norm = optax.tree.norm(grads)
  update_norm = optax.tree.norm(updates)
  finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
            & jnp.isfinite(update_norm))
  skipped = state._replace(step=state.step + 1,
                           opt_state=_with_counts(state.opt_state,
                                                  state.step + 1))
  kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, skipped)
  return kept, {"finite": finite, "grad_norm": grad_norm,
                "update_norm": update_norm}


def _with_counts(opt_state: optax.OptState, count: jax.Array
                 ) -> optax.OptState:
  """`opt_state` with every optax `count` (schedules' steps) set to count."""
  if not optax.tree.get_all_with_path(opt_state, "count"):
    return opt_state
  return optax.tree.set(opt_state, count=count)


def apply_if_finite(optimizer: optax.GradientTransformation,
                    state: transforms.TrainState, net_state, loss, grads):
  """One optimizer step from `state` (new BN state `net_state`), dropped by
  keep_if_finite when anything is non-finite. Returns (state, metrics)."""
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  new = transforms.TrainState(state.step + 1,
                              optax.apply_updates(state.params, updates),
                              net_state, opt_state)
  return keep_if_finite(state, new, loss, grads, updates)
