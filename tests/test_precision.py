"""Mixed precision: params/BN in float32, convs in the compute dtype."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicreg_haiku import networks, precision

_CLASSES = (networks.ResNet18, networks.ResNet50, networks.Expander,
            networks.BatchNorm)


@pytest.fixture
def reset_policy():
  yield
  # Policies are global per class: leave float32 behind for other tests.
  precision.set_compute_dtype("float32")


def _run(images):
  """Init + one training-mode pass; returns the stem conv output too."""

  def forward(x):
    seen = {}

    def interceptor(next_f, args, kwargs, context):
      out = next_f(*args, **kwargs)
      if (context.method_name == "__call__"
          and context.module.module_name.endswith("stem_conv")):
        seen["stem"] = out
      return out

    with hk.intercept_methods(interceptor):
      feats = networks.ResNet18(stem="cifar", width=2)(x, True)
      emb = networks.Expander((8, 4))(feats, True)
    return feats, emb, seen["stem"]

  f = hk.transform_with_state(forward)
  params, state = f.init(jax.random.PRNGKey(0), images)
  (feats, emb, stem), new_state = jax.jit(f.apply)(params, state, None,
                                                  images)
  return params, new_state, feats, emb, stem


def _images():
  return jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 3)),
                     jnp.float32)


def test_bfloat16_policy(reset_policy):
  policy = precision.set_compute_dtype("bfloat16")
  assert policy.compute_dtype == jnp.bfloat16
  assert policy.param_dtype == jnp.float32
  params, state, feats, emb, stem = _run(_images())
  for leaf in jax.tree.leaves(params):
    assert leaf.dtype == jnp.float32
  for leaf in jax.tree.leaves(state):  # BN running statistics
    assert leaf.dtype == jnp.float32
  assert stem.dtype == jnp.bfloat16  # the conv computes in bf16
  assert feats.dtype == jnp.float32 and emb.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(feats)))
  # Same parameters under float32: close results.
  precision.set_compute_dtype("float32")
  _, state32, feats32, emb32, _ = _run(_images())
  np.testing.assert_allclose(feats, feats32, rtol=0.1, atol=0.15)
  np.testing.assert_allclose(emb, emb32, rtol=0.1, atol=0.3)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state32)):
    np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02)


def test_float32_policy_keeps_everything_float32(reset_policy):
  precision.set_compute_dtype("float32")
  params, state, feats, emb, stem = _run(_images())
  for leaf in jax.tree.leaves((params, state, feats, emb, stem)):
    assert leaf.dtype == jnp.float32


def test_unknown_precision_raises():
  with pytest.raises(ValueError):
    precision.set_compute_dtype("float16")
