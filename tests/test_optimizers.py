"""LARS and the warm-up cosine schedule against NumPy transcriptions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from test_config import load_config

from vicreg_haiku.evaluation import classifier
from vicreg_haiku.models import transforms
from vicreg_haiku.training import optimizers
from vicreg_haiku.training.optimizers import lars, warmup_cosine

_NO_LARS = {("linear", "b"), ("batch_norm", "scale"), ("batch_norm", "offset")}


def _params(rng):
  return {
      "linear": {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=(3,))},
      # BN params in Haiku's (1,1,1,C) shape: excluded by NAME, not by ndim.
      "batch_norm": {"scale": 1 + rng.normal(size=(1, 1, 1, 3)),
                     "offset": rng.normal(size=(1, 1, 1, 3))},
      # A 1-d "w": still gets weight decay and the trust ratio.
      "conv": {"w": rng.normal(size=(5,))},
      # Zero norm: trust ratio 1.
      "zero": {"w": np.zeros((2, 2))},
  }


def _grads(rng, params):
  return jax.tree.map(lambda p: rng.normal(size=p.shape), params)


def _np_lars(params, grads_seq, lrs, wd, mom, eta, lr_after_momentum=True):
  """The official update, in float64; lr_after_momentum=False is optax.lars'
  order (lr scaled into the update before the momentum)."""
  params = {m: {k: np.array(v, np.float64) for k, v in d.items()}
            for m, d in params.items()}
  mu = {m: {k: np.zeros_like(v) for k, v in d.items()}
        for m, d in params.items()}
  for grads, lr in zip(grads_seq, lrs):
    for m, d in params.items():
      for k, p in d.items():
        g = np.array(grads[m][k], np.float64)
        if (m, k) not in _NO_LARS:
          g = g + wd * p
          pn, gn = np.linalg.norm(p), np.linalg.norm(g)
          g = g * (eta * pn / gn if pn > 0 and gn > 0 else 1.0)
        if lr_after_momentum:
          mu[m][k] = mom * mu[m][k] + g
          d[k] = p - lr * mu[m][k]
        else:
          mu[m][k] = mom * mu[m][k] + lr * g
          d[k] = p - mu[m][k]
  return params


def _run(opt, params, grads_seq, jit=True):
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = opt.init(params)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step) if jit else step
  for grads in grads_seq:
    grads = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads)
    params, state = step(params, state, grads)
  return params


def _assert_tree_close(actual, expected, rtol=1e-5, atol=1e-6):
  for m, d in expected.items():
    for k, v in d.items():
      np.testing.assert_allclose(actual[m][k], v, rtol=rtol, atol=atol,
                                 err_msg=f"{m}/{k}")


def _max_diff(a, b):
  return max(np.abs(np.asarray(a[m][k]) - b[m][k]).max()
             for m in b for k in b[m])


def test_lars_matches_official_order_constant_lr():
  rng = np.random.default_rng(0)
  params = _params(rng)
  grads = [_grads(rng, params) for _ in range(3)]
  kw = dict(wd=0.1, mom=0.9, eta=0.02)
  out = _run(lars(0.5, weight_decay=0.1, momentum=0.9, trust_coefficient=0.02),
             params, grads)
  expected = _np_lars(params, grads, [0.5] * 3, **kw)
  _assert_tree_close(out, expected)
  # Unjitted too (the mask is built from names in Python).
  _assert_tree_close(_run(lars(0.5, weight_decay=0.1, momentum=0.9,
                               trust_coefficient=0.02), params, grads,
                          jit=False), expected)


def test_lars_selects_by_name_not_ndim():
  rng = np.random.default_rng(1)
  params = _params(rng)
  grads = [_grads(rng, params)]
  out = _run(lars(1.0, weight_decay=0.5, trust_coefficient=0.01), params,
             grads)
  # Excluded params: plain SGD step g (no wd, no ratio) on the first step.
  for m, k in _NO_LARS:
    np.testing.assert_allclose(out[m][k], params[m][k] - grads[0][m][k],
                               rtol=1e-5, atol=1e-6)
  # The 1-d conv "w": decayed and trust-ratio scaled.
  p, g = params["conv"]["w"], grads[0]["conv"]["w"] + 0.5 * params["conv"]["w"]
  ratio = 0.01 * np.linalg.norm(p) / np.linalg.norm(g)
  np.testing.assert_allclose(out["conv"]["w"], p - ratio * g, rtol=1e-5,
                             atol=1e-6)
  # The zero-norm param: ratio 1, so the raw gradient.
  np.testing.assert_allclose(out["zero"]["w"], -grads[0]["zero"]["w"],
                             rtol=1e-5, atol=1e-6)


def test_lars_defaults_are_momentum_09_eta_0001():
  rng = np.random.default_rng(2)
  params = _params(rng)
  grads = [_grads(rng, params) for _ in range(3)]
  out = _run(lars(0.3, weight_decay=1e-2), params, grads)
  _assert_tree_close(
      out, _np_lars(params, grads, [0.3] * 3, wd=1e-2, mom=0.9, eta=0.001))


def test_lars_schedule_applies_lr_after_momentum():
  rng = np.random.default_rng(3)
  params = _params(rng)
  grads = [_grads(rng, params) for _ in range(3)]
  schedule = lambda step: 0.1 * (1 + 4 * step)  # 0.1, 0.5, 0.9
  lrs = [0.1, 0.5, 0.9]
  kw = dict(wd=0.1, mom=0.9, eta=0.02)
  out = _run(lars(schedule, weight_decay=0.1, trust_coefficient=0.02), params,
             grads)
  after = _np_lars(params, grads, lrs, **kw)
  before = _np_lars(params, grads, lrs, lr_after_momentum=False, **kw)
  _assert_tree_close(out, after)
  assert _max_diff(out, before) > 1e-2
  # optax.lars (same masks, lr before momentum) differs too.
  mask = {m: {k: (m, k) not in _NO_LARS for k in d} for m, d in params.items()}
  reference = optax.lars(schedule, weight_decay=0.1, weight_decay_mask=mask,
                         trust_coefficient=0.02, eps=0.0,
                         trust_ratio_mask=mask, momentum=0.9)
  optax_out = _run(reference, params, grads)
  _assert_tree_close(optax_out, before, rtol=1e-4, atol=1e-5)
  assert _max_diff(out, {m: {k: np.asarray(v) for k, v in d.items()}
                         for m, d in optax_out.items()}) > 1e-2


def test_warmup_cosine_from_the_formula():
  base_lr, batch, warmup, total = 0.2, 512, 10, 110
  schedule = warmup_cosine(base_lr, batch, warmup, total)
  peak = 0.2 * 512 / 256
  end = 0.001 * peak

  def value(step):
    return float(schedule(step))

  np.testing.assert_allclose(value(0), 0.0, atol=1e-9)
  np.testing.assert_allclose(value(5), peak / 2, rtol=1e-6)
  np.testing.assert_allclose(value(3), peak * 3 / 10, rtol=1e-6)
  np.testing.assert_allclose(value(10), peak, rtol=1e-6)
  np.testing.assert_allclose(value(110), end, rtol=1e-4)
  np.testing.assert_allclose(value(60), (peak + end) / 2, rtol=1e-6)
  q = 0.5 * (1 + math.cos(math.pi * 25 / 100))
  np.testing.assert_allclose(value(35), peak * q + end * (1 - q), rtol=1e-6)
  # optax passes an int32 count under jit.
  np.testing.assert_allclose(float(jax.jit(schedule)(jnp.int32(60))),
                             (peak + end) / 2, rtol=1e-6)


def _train(optimizer, params, grads_seq):
  """optimizers.apply_if_finite (the steps' update) over grads_seq."""
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = transforms.TrainState(jnp.zeros([], jnp.int32), params, {},
                                optimizer.init(params))
  step = jax.jit(lambda state, grads: optimizers.apply_if_finite(
      optimizer, state, {}, jnp.float32(0.0), grads))
  for grads in grads_seq:
    state, metrics = step(state, jax.tree.map(
        lambda x: jnp.asarray(x, jnp.float32), grads))
  return state


def _nan_like(tree):
  return jax.tree.map(lambda x: np.full(np.shape(x), np.nan), tree)


def test_a_skipped_step_does_not_delay_the_lars_schedule():
  """After a non-finite (skipped) step k, step k + 1 applies schedule(k + 1),
  the lr the pretraining step logs, not the schedule one step behind."""
  rng = np.random.default_rng(4)
  params = _params(rng)
  g1, g2 = _grads(rng, params), _grads(rng, params)
  schedule = warmup_cosine(1.0, 256, 4, 20)  # 0, 0.25, 0.5 at steps 0, 1, 2
  state = _train(lars(schedule, weight_decay=0.1, trust_coefficient=0.02),
                 params, [g1, _nan_like(g1), g2])
  assert int(state.step) == 3
  # The skipped step changed nothing but the step: g1 at lr 0, g2 at 0.5.
  expected = _np_lars(params, [g1, g2], [0.0, 0.5], wd=0.1, mom=0.9, eta=0.02)
  _assert_tree_close(state.params, expected)


def test_a_skipped_step_does_not_delay_the_classifier_schedules():
  config = load_config("digits")
  config.finetune.update(epochs=1, weight_decay=0.1, lr_backbone=0.05,
                         lr_head=0.2)
  total = classifier.steps(config, "finetune")[1]
  rng = np.random.default_rng(5)
  params = {"encoder/~/conv": {"w": rng.normal(size=(3, 3))},
            "encoder/~/bn": {"scale": 1 + rng.normal(size=(1, 3)),
                             "offset": rng.normal(size=(1, 3))},
            "linear_head": {"w": rng.normal(size=(3, 2)),
                            "b": rng.normal(size=(2,))}}
  g1, g2 = _grads(rng, params), _grads(rng, params)
  optimizer = classifier.make_optimizer(config, "finetune",
                                        classifier.rates(config, "finetune"))
  state = _train(optimizer, params,
                 [g1, _nan_like(g1), g2])
  # NumPy: SGD, momentum 0.9, decay on weights only, cosine to 0 per group;
  # the applied steps are 0 and 2.
  for module, leaves in params.items():
    base = 0.05 if module.startswith("encoder") else 0.2
    for name, p in leaves.items():
      p, m = np.array(p, np.float64), 0.0
      for grads, t in ((g1, 0), (g2, 2)):
        g = grads[module][name] + (0.1 * p if name == "w" else 0.0)
        m = 0.9 * m + g
        p = p - base * 0.5 * (1 + math.cos(math.pi * t / total)) * m
      np.testing.assert_allclose(state.params[module][name], p, rtol=1e-5,
                                 atol=1e-6, err_msg=f"{module}/{name}")
