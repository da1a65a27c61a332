"""ResNet encoders, BatchNorm and Expander against NumPy/lax references."""

import math

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicreg_haiku.models import heads
from vicreg_haiku.models import layers
from vicreg_haiku.models import resnet
from vicreg_haiku.utils import compile_target


def _count(params):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


def _resnet(cls=resnet.ResNet18, **kw):
  return hk.transform_with_state(lambda x, t: cls(**kw)(x, t))


def _init(f, x, seed=0):
  # Inference mode: nothing returned depends on the forward pass, so XLA drops
  # it and this compiles in no time (the initial state is the same).
  return jax.jit(lambda rng, x: f.init(rng, x, False))(
      jax.random.PRNGKey(seed), x)


def _init_drawing(model, x, draw=(), seed=0):
  """(f, params, state): f transforms model(x, is_training), init jitted.

  XLA takes seconds on CPU to compile each random draw (tens per ResNet), so
  only the parameters of the modules named in `draw` come from the model's
  initialisers. The init makes the other conv kernels and dense weights and
  biases zeros; they are then NumPy draws at the model's scales: kaiming-normal
  fan-out for convs, torch's U(+-1/sqrt(fan_in)) for dense layers. BatchNorm
  parameters and state are always the model's own.
  """

  def creator(next_creator, shape, dtype, init, context):
    if context.name in ("w", "b") and context.module_name not in draw:
      init = jnp.zeros
    return next_creator(shape, dtype, init)

  def forward(x, is_training):
    with hk.custom_creator(creator):
      return model(x, is_training)

  f = hk.transform_with_state(forward)
  params, state = _init(f, x, seed)
  rng = np.random.default_rng(seed)
  params = {m: dict(v) for m, v in params.items()}
  for module, values in params.items():
    if module in draw or "w" not in values:
      continue
    shape = values["w"].shape
    if len(shape) == 4:  # conv
      std = math.sqrt(2.0 / (shape[0] * shape[1] * shape[3]))  # fan_out
      new = {"w": rng.normal(size=shape) * std}
    else:
      bound = 1 / math.sqrt(shape[0])
      new = {k: rng.uniform(-bound, bound, size=values[k].shape)
             for k in values}
    for k, v in new.items():
      values[k] = jnp.asarray(v, values[k].dtype)
  return f, params, state


def _init_resnet(x, cls=resnet.ResNet18, draw=(), seed=0, **kw):
  return _init_drawing(lambda x, t: cls(**kw)(x, t), x, draw, seed)


def _apply(f, params, state, x, is_training):
  return jax.jit(f.apply, static_argnums=4)(params, state, None, x, is_training)


def _images(n, size, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(
      size=(n, size, size, 3)).astype(np.float32))


def _capture(f, params, state, x, is_training, wanted):
  """Applies f (jitted) and returns (out, state, {suffix: (input, output)})
  for the modules whose path ends in one of `wanted`."""

  def run(params, state, x):
    seen = {}

    def interceptor(next_f, args, kwargs, context):
      out = next_f(*args, **kwargs)
      if context.method_name == "__call__":
        for suffix in wanted:
          if context.module.module_name.endswith(suffix):
            seen[suffix] = (args[0], out)
      return out

    with hk.intercept_methods(interceptor):
      out, new_state = f.apply(params, state, None, x, is_training)
    return out, new_state, seen

  return jax.jit(run)(params, state, x)


# --------------------------------------------------------------- param counts


@pytest.mark.parametrize("cls,expected", [(resnet.ResNet18, 11_176_512),
                                          (resnet.ResNet50, 23_508_032)])
def test_parameter_counts_match_torchvision_without_fc(cls, expected):
  f = _resnet(cls)
  params, state = jax.eval_shape(lambda r, x: f.init(r, x, True),
                                 jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  assert _count(params) == expected
  out = jax.eval_shape(
      lambda p, s, x: f.apply(p, s, None, x, False)[0], params, state,
      jnp.zeros((2, 64, 64, 3)))
  assert out.shape == (2, 512 if cls is resnet.ResNet18 else 2048)


# --------------------------------------------------- padding and spatial sizes

def _np_conv(x, w, stride, pad):
  x = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  kh, kw = w.shape[:2]
  out_h = (x.shape[1] - kh) // stride + 1
  out_w = (x.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
  for i in range(kh):
    for j in range(kw):
      patch = x[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride]
      out += patch @ np.asarray(w[i, j], np.float64)
  return out


def _np_max_pool_3x3_s2_pad1(x):
  x = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)),
             constant_values=-np.inf)
  out_h = (x.shape[1] - 3) // 2 + 1
  out_w = (x.shape[2] - 3) // 2 + 1
  out = np.full((x.shape[0], out_h, out_w, x.shape[3]), -np.inf)
  for i in range(3):
    for j in range(3):
      out = np.maximum(out, x[:, i:i + 2 * out_h:2, j:j + 2 * out_w:2])
  return out


@pytest.fixture(scope="module")
def imagenet_run():
  """One compiled training-mode pass of a tiny ResNet18 on even-sized input."""
  x = _images(2, 10)  # even size: SAME would pad 2 before / 3 after.
  f, params, state = _init_resnet(x, width=4)
  _, _, seen = _capture(
      f, params, state, x, True,
      ["stem_conv", "stem_batch_norm", "stage_0_block_0",
       "stage_1_block_0/conv_0", "stage_1_block_0/shortcut_conv"])
  return x, params, seen


def test_imagenet_stem_pads_symmetrically_not_same(imagenet_run):
  x, params, seen = imagenet_run
  w = params["res_net18/stem_conv"]["w"]
  assert w.shape == (7, 7, 3, 4)
  stem_out = np.asarray(seen["stem_conv"][1])
  expected = _np_conv(x, w, stride=2, pad=3)
  assert stem_out.shape == expected.shape == (2, 5, 5, 4)
  np.testing.assert_allclose(stem_out, expected, rtol=1e-4, atol=1e-4)
  same = jax.lax.conv_general_dilated(
      x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  assert np.abs(np.asarray(same) - expected).max() > 1e-2
  # Max-pool 3/2 pad 1 (with -inf) of relu(BN(stem)) is the first block's input.
  pooled = np.asarray(seen["stage_0_block_0"][0])
  bn_out = np.asarray(seen["stem_batch_norm"][1])
  expected_pool = _np_max_pool_3x3_s2_pad1(np.maximum(bn_out, 0))
  assert pooled.shape == expected_pool.shape == (2, 3, 3, 4)
  np.testing.assert_allclose(pooled, expected_pool, rtol=1e-5, atol=1e-6)


def _plain_max_pool_3x3_s2(x):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                               (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))


@pytest.mark.parametrize("size", [9, 10, 48])
def test_max_pool_custom_vjp_matches_select_and_scatter(size):
  rng = np.random.default_rng(size)
  # ReLU zeros, a constant patch and values on a coarse grid: many windows
  # hold their maximum more than once, so the tie rule (first maximum in
  # row-major window order, as torch and select-and-scatter) is exercised.
  x = np.round(2 * np.maximum(rng.normal(size=(2, size, size, 3)), 0)) / 2
  x[:, 2:7, 1:6] = 0.5
  x = x.astype(np.float32)
  out, vjp = jax.vjp(layers.max_pool_3x3_s2, x)
  expected_out, expected_vjp = jax.vjp(_plain_max_pool_3x3_s2, x)
  np.testing.assert_array_equal(out, expected_out)
  # Small integer cotangents: sums are exact, so the routing must be equal.
  dy = rng.integers(-8, 9, size=out.shape).astype(np.float32)
  np.testing.assert_array_equal(vjp(dy)[0], expected_vjp(dy)[0])


def _np_conv_grads(x, w, dy, stride, pad):
  """The gradients of _np_conv's sum for the cotangent dy: (dx, dw)."""
  x = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  w = np.asarray(w, np.float64)
  dy = np.asarray(dy, np.float64)
  out_h, out_w = dy.shape[1:3]
  dx = np.zeros_like(x)
  dw = np.zeros_like(w)
  for i in range(w.shape[0]):
    for j in range(w.shape[1]):
      window = (slice(None), slice(i, i + stride * out_h, stride),
                slice(j, j + stride * out_w, stride))
      dw[i, j] = np.einsum("nhwc,nhwo->co", x[window], dy)
      dx[window] += dy @ w[i, j].T
  return dx[:, pad:dx.shape[1] - pad, pad:dx.shape[2] - pad], dw


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 9), (3, 2, 10),
                                                (3, 2, 9), (1, 2, 9),
                                                (7, 2, 12)])
def test_conv_gradients_match_numpy(kernel, stride, size):
  # The custom VJP (weight gradient from inputs held in memory on XLA:CPU),
  # jitted as in training, against the sums written out.
  rng = np.random.default_rng(kernel * 10 + size)
  x = rng.normal(size=(3, size, size, 4)).astype(np.float32)
  w = rng.normal(size=(kernel, kernel, 4, 5)).astype(np.float32)
  out, vjp = jax.vjp(jax.jit(lambda x, w: layers._conv2d(x, w, stride)), x, w)
  np.testing.assert_allclose(out, _np_conv(x, w, stride, kernel // 2),
                             rtol=1e-4, atol=1e-4)
  dy = rng.normal(size=out.shape).astype(np.float32)
  dx, dw = jax.jit(vjp)(dy)
  expected_dx, expected_dw = _np_conv_grads(x, w, dy, stride, kernel // 2)
  np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dw, expected_dw, rtol=1e-4, atol=1e-4)


def test_block_convs_pad_symmetrically(imagenet_run):
  _, params, seen = imagenet_run
  block_in, out = seen["stage_1_block_0/conv_0"]
  w = params["res_net18/stage_1_block_0/conv_0"]["w"]
  np.testing.assert_allclose(out, _np_conv(block_in, w, 2, 1), rtol=1e-4,
                             atol=1e-4)
  block_in, out = seen["stage_1_block_0/shortcut_conv"]
  w = params["res_net18/stage_1_block_0/shortcut_conv"]["w"]
  np.testing.assert_allclose(out, _np_conv(block_in, w, 2, 0), rtol=1e-4,
                             atol=1e-4)


def test_spatial_sizes_at_96px():
  f = _resnet(width=4)
  x = jnp.zeros((1, 96, 96, 3))
  params, state = jax.eval_shape(lambda r, x: f.init(r, x, True),
                                 jax.random.PRNGKey(0), x)
  shapes = {}

  def interceptor(next_f, args, kwargs, context):
    out = next_f(*args, **kwargs)
    if context.method_name == "__call__":
      name = context.module.module_name
      if name.endswith("stem_conv"):
        shapes["stem"] = out.shape
      elif name.endswith("stage_0_block_0"):
        shapes["pool"] = args[0].shape
      elif name.endswith("stage_3_block_1"):
        shapes["final"] = out.shape
    return out

  def run(p, s, x):
    with hk.intercept_methods(interceptor):
      return f.apply(p, s, None, x, False)[0]

  out = jax.eval_shape(run, params, state, x)
  assert shapes["stem"][1:3] == (48, 48)
  assert shapes["pool"][1:3] == (24, 24)
  assert shapes["final"][1:3] == (3, 3)
  assert out.shape == (1, 32)


def test_cifar_stem_keeps_resolution():
  x = _images(2, 16)
  f, params, state = _init_resnet(x, stem="cifar", width=4)
  assert params["res_net18/stem_conv"]["w"].shape == (3, 3, 3, 4)
  _, _, seen = _capture(f, params, state, x, True,
                        ["stem_conv", "stage_0_block_0", "stage_3_block_1"])
  stem_in, stem_out = seen["stem_conv"]
  np.testing.assert_allclose(
      stem_out, _np_conv(stem_in, params["res_net18/stem_conv"]["w"], 1, 1),
      rtol=1e-4, atol=1e-4)
  assert stem_out.shape == (2, 16, 16, 4)
  assert seen["stage_0_block_0"][0].shape == (2, 16, 16, 4)  # no max-pool
  assert seen["stage_3_block_1"][1].shape == (2, 2, 2, 32)
  with pytest.raises(ValueError):
    _resnet(stem="tiny").init(jax.random.PRNGKey(0), x, True)


# ---------------------------------------------------------------------- init


@pytest.mark.parametrize("cls,last_bn", [(resnet.ResNet18, "batch_norm_1"),
                                         (resnet.ResNet50, "batch_norm_2")])
def test_last_bn_of_each_block_is_zero_initialised(cls, last_bn):
  # Only the BatchNorm parameters are read: those are the model's own init.
  _, params, _ = _init_resnet(jnp.zeros((1, 32, 32, 3)), cls, width=2)
  zero, one = 0, 0
  for module, values in params.items():
    if "scale" not in values:
      continue
    assert np.all(values["offset"] == 0), module
    if module.endswith("/" + last_bn):
      assert np.all(values["scale"] == 0), module
      zero += 1
    else:
      assert np.all(values["scale"] == 1), module
      one += 1
  blocks = 8 if cls is resnet.ResNet18 else 16
  assert zero == blocks
  # stem + each block's other BNs + the shortcut BNs (ResNet18 has none in
  # stage 0, ResNet50's first block widens the channels 4x).
  if cls is resnet.ResNet18:
    assert one == 1 + blocks * 1 + 3
  else:
    assert one == 1 + blocks * 2 + 4


def test_conv_init_is_kaiming_normal_fan_out():
  _, params, _ = _init_resnet(
      jnp.zeros((1, 8, 8, 3)), width=16, stem="cifar",
      draw=("res_net18/stage_3_block_1/conv_1", "res_net18/stem_conv"))
  w = np.asarray(params["res_net18/stage_3_block_1/conv_1"]["w"])
  assert w.shape == (3, 3, 128, 128)
  std = math.sqrt(2.0 / (3 * 3 * 128))  # fan_out = kh * kw * out
  np.testing.assert_allclose(w.std(), std, rtol=0.02)
  assert abs(w.mean()) < 0.01 * std * 10
  # A plain normal, not truncated at 2 std (torch's kaiming_normal_).
  assert np.mean(np.abs(w) > 2.5 * std) > 0.005
  w = np.asarray(params["res_net18/stem_conv"]["w"])
  np.testing.assert_allclose(w.std(), math.sqrt(2.0 / (9 * 16)), rtol=0.15)


def test_linear_init_is_torch_uniform():
  f = hk.transform(lambda x: layers.TorchLinear(300)(x))
  params = f.init(jax.random.PRNGKey(0), jnp.zeros((1, 400)))
  bound = 1 / math.sqrt(400)
  w = np.asarray(params["torch_linear"]["w"])
  b = np.asarray(params["torch_linear"]["b"])
  assert w.shape == (400, 300) and b.shape == (300,)
  for v in (w, b):
    assert np.abs(v).max() <= bound
    assert np.abs(v).max() > 0.95 * bound
  np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.02)


# ----------------------------------------------------------------- BatchNorm

def _bn():
  return hk.transform_with_state(lambda x, t: layers.BatchNorm()(x, t))


def test_batch_norm_training_uses_batch_stats_and_updates_unbiased():
  rng = np.random.default_rng(0)
  # A small variance, so eps = 1e-5 matters (1e-3 would be far off).
  x = (0.01 * rng.normal(size=(4, 3, 3, 5)) + rng.normal(size=5)).astype(
      np.float32)
  f = _bn()
  params, state = f.init(None, x, True)
  mod = "batch_norm"
  np.testing.assert_array_equal(state[mod]["mean"], np.zeros(5))
  np.testing.assert_array_equal(state[mod]["var"], np.ones(5))
  params = {mod: {"scale": jnp.asarray(rng.uniform(0.5, 2, 5), jnp.float32),
                  "offset": jnp.asarray(rng.normal(size=5), jnp.float32)}}
  state = {mod: {"mean": jnp.asarray(rng.normal(size=5), jnp.float32),
                 "var": jnp.asarray(rng.uniform(0.5, 2, 5), jnp.float32)}}
  out, new_state = f.apply(params, state, None, x, True)
  x64 = x.astype(np.float64).reshape(-1, 5)
  mean = x64.mean(0)
  var = x64.var(0)  # biased, for the normalisation (as torch)
  scale = np.asarray(params[mod]["scale"], np.float64)
  offset = np.asarray(params[mod]["offset"], np.float64)
  expected = (x64 - mean) / np.sqrt(var + 1e-5) * scale + offset
  np.testing.assert_allclose(np.asarray(out).reshape(-1, 5), expected,
                             rtol=1e-4, atol=1e-4)
  unbiased = x64.var(0, ddof=1)
  rm = np.asarray(state[mod]["mean"], np.float64)
  rv = np.asarray(state[mod]["var"], np.float64)
  np.testing.assert_allclose(new_state[mod]["mean"], 0.9 * rm + 0.1 * mean,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new_state[mod]["var"], 0.9 * rv + 0.1 * unbiased,
                             rtol=1e-5, atol=1e-7)
  # Inference mode: running statistics, state unchanged.
  out, same_state = f.apply(params, new_state, None, x, False)
  rm = np.asarray(new_state[mod]["mean"], np.float64)
  rv = np.asarray(new_state[mod]["var"], np.float64)
  expected = (x64 - rm) / np.sqrt(rv + 1e-5) * scale + offset
  np.testing.assert_allclose(np.asarray(out).reshape(-1, 5), expected,
                             rtol=1e-4, atol=1e-4)
  jax.tree.map(np.testing.assert_array_equal, same_state, new_state)


def test_batch_norm_statistics_are_over_the_whole_batch():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(8, 6)).astype(np.float32)
  x[:4] += 1.0
  f = _bn()
  params, state = f.init(None, x, True)
  full, _ = f.apply(params, state, None, x, True)
  halves = np.concatenate(
      [f.apply(params, state, None, x[s], True)[0]
       for s in (slice(0, 4), slice(4, 8))])
  assert np.abs(np.asarray(full) - halves).max() > 0.1


def _plain_batch_norm_train(x, scale, offset, eps):
  """The training-mode BN as written, for jax.vjp to differentiate."""
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axis=axes)
  var = jnp.mean(jnp.square(x - mean), axis=axes)
  y = (x - mean) * (jax.lax.rsqrt(var + eps) * scale) + offset
  return y, mean, var


@pytest.mark.parametrize("shape", [(8, 5, 5, 4), (16, 7), (3, 6, 6, 32)])
def test_batch_norm_custom_vjp_matches_autodiff(shape):
  rng = np.random.default_rng(2)
  x = (3 * rng.normal(size=shape) + 1).astype(np.float32)
  scale, offset, dmean, dvar = rng.normal(size=(4, shape[-1])).astype(
      np.float32)
  dy = rng.normal(size=shape).astype(np.float32)
  outputs, vjp = jax.vjp(lambda *a: layers._batch_norm_train(*a, 1e-5), x,
                         scale, offset)
  expected_outputs, expected_vjp = jax.vjp(
      lambda *a: _plain_batch_norm_train(*a, 1e-5), x, scale, offset)
  # The forward is the plain one, bit for bit; the backward its exact
  # derivative, including the mean and variance outputs' cotangents.
  jax.tree.map(np.testing.assert_array_equal, outputs, expected_outputs)
  for got, want in zip(vjp((dy, dmean, dvar)),
                       expected_vjp((dy, dmean, dvar))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ Expander

def _np_expander(params, x, is_training, state=None):
  h = np.asarray(x, np.float64)
  for i in range(2):
    lin = params[f"expander/linear_{i}"]
    h = h @ np.asarray(lin["w"], np.float64) + np.asarray(lin["b"], np.float64)
    bn = params[f"expander/batch_norm_{i}"]
    if is_training:
      mean, var = h.mean(0), h.var(0)
    else:
      mean = np.asarray(state[f"expander/batch_norm_{i}"]["mean"], np.float64)
      var = np.asarray(state[f"expander/batch_norm_{i}"]["var"], np.float64)
    h = (h - mean) / np.sqrt(var + 1e-5) * np.asarray(bn["scale"]) + np.asarray(
        bn["offset"])
    h = np.maximum(h, 0)
  return h @ np.asarray(params["expander/linear_2"]["w"], np.float64)


def test_expander_layout_and_forward():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 5)), jnp.float32)
  f, params, state = _init_drawing(
      lambda x, t: heads.Expander((16, 12, 8))(x, t), x)
  assert {m: set(v) for m, v in params.items()} == {
      "expander/linear_0": {"w", "b"},
      "expander/batch_norm_0": {"scale", "offset"},
      "expander/linear_1": {"w", "b"},
      "expander/batch_norm_1": {"scale", "offset"},
      "expander/linear_2": {"w"},  # last layer: no bias
  }
  assert params["expander/linear_0"]["w"].shape == (5, 16)
  assert params["expander/linear_1"]["w"].shape == (16, 12)
  assert params["expander/linear_2"]["w"].shape == (12, 8)

  # One compiled training-mode pass, also capturing the last layer's input.
  out, new_state, seen = _capture(f, params, state, x, True, ["linear_2"])
  assert out.shape == (6, 8)
  np.testing.assert_allclose(out, _np_expander(params, x, True), rtol=1e-4,
                             atol=1e-5)
  assert np.asarray(out).min() < 0  # nothing (no ReLU/BN) after the last layer
  # Training mode updates the BN state; inference mode uses it.
  for i in range(2):
    assert np.abs(np.asarray(new_state[f"expander/batch_norm_{i}"]["mean"])
                  ).max() > 1e-3
  out_eval, _ = _apply(f, params, new_state, x, False)
  np.testing.assert_allclose(
      out_eval, _np_expander(params, x, False, new_state), rtol=1e-4,
      atol=1e-5)
  assert np.abs(np.asarray(out_eval) - np.asarray(out)).max() > 1e-2
  # Training-mode BN normalises the hidden pre-activations of the batch: the
  # input to the last layer has per-dimension batch statistics of relu(N(0,1)).
  h = np.asarray(seen["linear_2"][0])
  assert h.min() >= 0
  # Whole-batch statistics: two halves give other outputs.
  halves = np.concatenate([_apply(f, params, state, x[s], True)[0]
                           for s in (slice(0, 3), slice(3, 6))])
  assert np.abs(np.asarray(out) - halves).max() > 1e-3


@pytest.mark.parametrize("platform", ["cpu", "tpu"])
def test_max_pool_gradient_routes_ties_as_torch(platform):
  """The stem max-pool's gradient, on XLA:CPU's path (elementwise passes)
  and on the accelerators' (XLA's select-and-scatter, traced here as for a
  TPU), equals torch's MaxPool2d(3, 2, 1) backward on a ReLU's output, whose
  windows tie often (zeros, and values repeated on purpose)."""
  import torch  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = np.maximum(rng.integers(-3, 4, (2, 9, 11, 5)), 0).astype(np.float32)
  dy = rng.normal(size=(2, 5, 6, 5)).astype(np.float32)
  with compile_target.compiling_for(platform):
    _, vjp = jax.vjp(jax.jit(layers.max_pool_3x3_s2), jnp.asarray(x))
    dx, = vjp(jnp.asarray(dy))
  xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
  torch.nn.functional.max_pool2d(xt, 3, 2, 1).backward(
      torch.tensor(dy.transpose(0, 3, 1, 2)))
  expected = xt.grad.numpy().transpose(0, 2, 3, 1)
  # The same pixels get gradient; where overlapping windows both route to
  # one pixel, the two sums may round in another order (1 ulp).
  np.testing.assert_array_equal(np.asarray(dx) != 0, expected != 0)
  np.testing.assert_allclose(np.asarray(dx), expected, rtol=1e-6, atol=1e-7)
