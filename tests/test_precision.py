"""Mixed precision: params/BN in float32, convs in the compute dtype."""

import re

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicreg_haiku.models import heads
from vicreg_haiku.models import layers
from vicreg_haiku.models import precision
from vicreg_haiku.models import resnet
from vicreg_haiku.models import transforms
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import defaults

_CLASSES = (resnet.ResNet18, resnet.ResNet50, heads.Expander, layers.BatchNorm)


@pytest.fixture
def reset_policy():
  yield
  # Policies are global per class: leave float32 behind for other tests.
  precision.set_compute_dtype("float32")


def _run(images):
  """Init + one training-mode pass; returns the stem conv output too.

  XLA takes seconds on CPU to compile each random draw, so the init makes the
  conv kernels and dense weights and biases zeros; they are then NumPy draws
  at the model's scales (the same for both policies), cast to the dtypes the
  init gave them.
  """

  def creator(next_creator, shape, dtype, init, context):
    if context.name in ("w", "b"):
      init = jnp.zeros
    return next_creator(shape, dtype, init)

  def forward(x, is_training):
    seen = {}

    def interceptor(next_f, args, kwargs, context):
      out = next_f(*args, **kwargs)
      if (context.method_name == "__call__"
          and context.module.module_name.endswith("stem_conv")):
        seen["stem"] = out
      return out

    with hk.custom_creator(creator), hk.intercept_methods(interceptor):
      feats = resnet.ResNet18(stem="cifar", width=2)(x, is_training)
      emb = heads.Expander((8, 4))(feats, is_training)
    return feats, emb, seen["stem"]

  f = hk.transform_with_state(forward)
  # Inference mode: the forward pass is dead code to XLA (same params and
  # initial state as a training-mode init).
  params, state = jax.jit(lambda r, x: f.init(r, x, False))(
      jax.random.PRNGKey(0), images)
  rng = np.random.default_rng(0)
  params = {m: dict(v) for m, v in params.items()}
  for values in params.values():
    if "w" not in values:
      continue
    shape = values["w"].shape
    if len(shape) == 4:  # conv: kaiming normal, fan out
      std = np.sqrt(2.0 / (shape[0] * shape[1] * shape[3]))
      new = {"w": rng.normal(size=shape) * std}
    else:  # dense: torch's U(+-1/sqrt(fan_in))
      bound = 1 / np.sqrt(shape[0])
      new = {k: rng.uniform(-bound, bound, size=values[k].shape)
             for k in values}
    for k, v in new.items():
      values[k] = jnp.asarray(v, values[k].dtype)
  (feats, emb, stem), new_state = jax.jit(f.apply, static_argnums=4)(
      params, state, None, images, True)
  return params, new_state, feats, emb, stem


def _images():
  return jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 3)),
                     jnp.float32)


@pytest.fixture(scope="module")
def runs():
  """_run under each policy, once for the module."""
  try:
    out = {}
    for name in ("bfloat16", "float32"):
      precision.set_compute_dtype(name)
      out[name] = _run(_images())
    yield out
  finally:
    precision.set_compute_dtype("float32")


def test_bfloat16_policy(runs, reset_policy):
  policy = precision.set_compute_dtype("bfloat16")
  assert policy.compute_dtype == jnp.bfloat16
  assert policy.param_dtype == jnp.float32
  params, state, feats, emb, stem = runs["bfloat16"]
  for leaf in jax.tree.leaves(params):
    assert leaf.dtype == jnp.float32
  for leaf in jax.tree.leaves(state):  # BN running statistics
    assert leaf.dtype == jnp.float32
  assert stem.dtype == jnp.bfloat16  # the conv computes in bf16
  assert feats.dtype == jnp.float32 and emb.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(feats)))
  # Same parameters under float32: close results.
  params32, state32, feats32, emb32, _ = runs["float32"]
  jax.tree.map(np.testing.assert_array_equal, params, params32)
  np.testing.assert_allclose(feats, feats32, rtol=0.1, atol=0.15)
  np.testing.assert_allclose(emb, emb32, rtol=0.1, atol=0.3)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state32)):
    np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02)


def test_float32_policy_keeps_everything_float32(runs, reset_policy):
  precision.set_compute_dtype("float32")
  params, state, feats, emb, stem = runs["float32"]
  for leaf in jax.tree.leaves((params, state, feats, emb, stem)):
    assert leaf.dtype == jnp.float32


def test_unknown_precision_raises():
  with pytest.raises(ValueError):
    precision.set_compute_dtype("float16")


def test_bfloat16_step_computes_in_bfloat16_on_accelerators(monkeypatch,
                                                            reset_policy):
  """The pretraining step lowered as an accelerator gets it: every
  convolution and expander matmul, forward and backward, takes bfloat16
  operands; the only float32 products are the loss's covariance (HIGHEST);
  every buffer of the state is donated to the new state (updated in place)."""
  monkeypatch.setattr(layers, "_on_xla_cpu", lambda: False)
  config = defaults.base_config()
  config.model.width = 2
  config.model.expander_dims = (16, 16, 16)
  config.dataset.image_size = 8
  config.precision = "bfloat16"
  precision.set_compute_dtype("bfloat16")
  mesh = parallel.make_mesh()
  model = transforms.pretrain_model(config)
  optimizer, schedule = pretrain_step.make_optimizer(config, 10)
  state = jax.eval_shape(
      lambda: pretrain_step.init_state(config, model, optimizer))
  view = jax.ShapeDtypeStruct((4, 8, 8, 3), jnp.float32)
  step = pretrain_step.jit_step(config, model, optimizer, schedule, mesh)
  text = step.lower(state, {"view_a": view, "view_b": view}).as_text()
  kinds = {}
  for line in text.splitlines():
    op = re.search(r"stablehlo\.(convolution|dot_general)", line)
    if op:
      operands = re.findall(r"tensor<[0-9x]*(bf16|f32)>", line)[:2]
      kind = (op.group(1), *operands, "HIGHEST" in line)
      kinds[kind] = kinds.get(kind, 0) + 1
  # Both views: 20 convolutions each, forward, input and weight gradients
  # (less the stem's input gradient); 3 expander layers, 3 products each.
  assert kinds == {("convolution", "bf16", "bf16", False): 2 * (3 * 20 - 1),
                   ("dot_general", "bf16", "bf16", False): 2 * 3 * 3,
                   ("dot_general", "f32", "f32", True): 2 * 3}, kinds
  assert text.count("tf.aliasing_output") == len(jax.tree.leaves(state))
