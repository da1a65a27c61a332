"""vicreg_loss against a float64 NumPy transcription of DESIGN.md's formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicreg_haiku.training.losses import vicreg_loss


def _np_terms(z_a, z_b, eps=1e-4, *, biased=False, halve_variance=True,
              with_diagonal=False, divide_by_d=True, sum_branches=True):
  """DESIGN.md's terms in float64; the flags switch on the usual mistakes."""
  z_a = np.asarray(z_a, np.float64)
  z_b = np.asarray(z_b, np.float64)
  n, d = z_a.shape
  denom = n if biased else n - 1
  invariance = np.mean((z_a - z_b) ** 2)

  def one(z):
    c = z - z.mean(axis=0)
    var = (c ** 2).sum(axis=0) / denom
    variance = np.mean(np.maximum(0.0, 1.0 - np.sqrt(var + eps)))
    cov = c.T @ c / denom
    if not with_diagonal:
      cov = cov - np.diag(np.diag(cov))
    covariance = (cov ** 2).sum()
    if divide_by_d:
      covariance /= d
    return variance, covariance

  v_a, c_a = one(z_a)
  v_b, c_b = one(z_b)
  variance = (v_a + v_b) / 2 if halve_variance else v_a + v_b
  covariance = c_a + c_b if sum_branches else (c_a + c_b) / 2
  return invariance, variance, covariance


def _np_loss(terms, sim=25.0, std=25.0, cov=1.0):
  return sim * terms[0] + std * terms[1] + cov * terms[2]


def _data(seed=0, n=16, d=8):
  rng = np.random.default_rng(seed)
  # Per-dimension scales below and above 1 so the variance hinge is active on
  # some dimensions only; correlated columns so the covariance is not tiny;
  # different branches so the branch averaging/summing is visible.
  mix = np.eye(d) + 0.5 * rng.normal(size=(d, d))
  z_a = rng.normal(size=(n, d)) @ mix * rng.uniform(0.1, 1.5, size=d)
  z_b = 0.3 * rng.normal(size=(n, d)) @ mix + 0.5 * z_a
  return z_a.astype(np.float32), z_b.astype(np.float32)


def _close(actual, expected, rtol=1e-5):
  np.testing.assert_allclose(float(actual), expected, rtol=rtol, atol=1e-7)


def _far(actual, wrong, rtol=1e-2):
  assert abs(float(actual) - wrong) > rtol * abs(wrong), (float(actual), wrong)


@pytest.mark.parametrize("seed,n,d", [(0, 16, 8), (1, 5, 3), (2, 64, 32)])
def test_matches_numpy_reference(seed, n, d):
  z_a, z_b = _data(seed, n, d)
  loss, terms = vicreg_loss(jnp.asarray(z_a), jnp.asarray(z_b))
  ref = _np_terms(z_a, z_b)
  _close(terms["invariance"], ref[0])
  _close(terms["variance"], ref[1])
  _close(terms["covariance"], ref[2])
  _close(loss, _np_loss(ref))
  assert set(terms) == {"invariance", "variance", "covariance"}
  for value in (loss, *terms.values()):
    assert value.shape == () and value.dtype == jnp.float32


def test_catches_the_usual_mistakes():
  z_a, z_b = _data()
  _, terms = vicreg_loss(jnp.asarray(z_a), jnp.asarray(z_b))
  # The data must make every variance hinge and covariance term matter.
  assert _np_terms(z_a, z_b)[1] > 0.05
  _far(terms["variance"], _np_terms(z_a, z_b, biased=True)[1])
  _far(terms["covariance"], _np_terms(z_a, z_b, biased=True)[2])
  _far(terms["variance"], _np_terms(z_a, z_b, halve_variance=False)[1])
  _far(terms["covariance"], _np_terms(z_a, z_b, with_diagonal=True)[2])
  _far(terms["covariance"], _np_terms(z_a, z_b, divide_by_d=False)[2])
  _far(terms["covariance"], _np_terms(z_a, z_b, sum_branches=False)[2])


def test_default_coefficients_and_eps():
  z_a, z_b = _data(3)
  loss, terms = vicreg_loss(jnp.asarray(z_a), jnp.asarray(z_b))
  inv, var, cov = (float(terms[k]) for k in
                   ("invariance", "variance", "covariance"))
  _close(loss, 25.0 * inv + 25.0 * var + 1.0 * cov)
  weighted, _ = vicreg_loss(jnp.asarray(z_a), jnp.asarray(z_b), sim_coeff=2.0,
                            std_coeff=3.0, cov_coeff=5.0)
  _close(weighted, 2.0 * inv + 3.0 * var + 5.0 * cov)
  # eps shows on a collapsed dimension: its hinge is 1 - sqrt(eps) exactly.
  z = np.ones((4, 1), np.float32)
  _, t = vicreg_loss(jnp.asarray(z), jnp.asarray(z))
  _close(t["variance"], 1.0 - np.sqrt(1e-4))
  _, t = vicreg_loss(jnp.asarray(z), jnp.asarray(z), eps=1e-2)
  _close(t["variance"], 1.0 - np.sqrt(1e-2))


def test_bfloat16_inputs_give_float32_outputs():
  z_a, z_b = _data(4, 32, 16)
  loss32, terms32 = vicreg_loss(jnp.asarray(z_a), jnp.asarray(z_b))
  a16 = jnp.asarray(z_a, jnp.bfloat16)
  b16 = jnp.asarray(z_b, jnp.bfloat16)
  loss16, terms16 = vicreg_loss(a16, b16)
  assert loss16.dtype == jnp.float32
  for key, value in terms16.items():
    assert value.dtype == jnp.float32, key
    np.testing.assert_allclose(float(value), float(terms32[key]), rtol=3e-2)
  np.testing.assert_allclose(float(loss16), float(loss32), rtol=2e-2)
  # Math in float32 on the bf16-rounded values: matches float64 closely.
  ref = _np_terms(np.asarray(a16, np.float32), np.asarray(b16, np.float32))
  _close(loss16, _np_loss(ref), rtol=1e-5)


def test_statistics_are_over_the_whole_batch():
  """Per-device (per-half) losses averaged are not the global-batch loss."""
  z_a, z_b = _data(5, 16, 8)
  # The two halves ("devices") hold differently centred samples, as shards of
  # a real batch can: the global statistics see the spread between them.
  shift = np.where(np.arange(16)[:, None] < 8, 1.5, -1.5).astype(np.float32)
  z_a, z_b = z_a + shift, z_b + shift
  full, full_terms = vicreg_loss(jnp.asarray(z_a), jnp.asarray(z_b))
  _close(full, _np_loss(_np_terms(z_a, z_b)))
  halves = [vicreg_loss(jnp.asarray(z_a[s]), jnp.asarray(z_b[s]))
            for s in (slice(0, 8), slice(8, 16))]

  def mean_of_halves(key):
    return np.mean([float(h[1][key]) for h in halves])

  # The invariance term is a plain mean, so only var/cov tell them apart...
  np.testing.assert_allclose(float(full_terms["invariance"]),
                             mean_of_halves("invariance"), rtol=1e-5)
  _far(full_terms["variance"], mean_of_halves("variance"), rtol=0.5)
  _far(full_terms["covariance"], mean_of_halves("covariance"), rtol=0.5)
  # ...and so does the total (weighted so the invariance cannot mask it).
  kw = dict(sim_coeff=0.0, std_coeff=25.0, cov_coeff=1.0)
  full, _ = vicreg_loss(jnp.asarray(z_a), jnp.asarray(z_b), **kw)
  per_half = np.mean([
      float(vicreg_loss(jnp.asarray(z_a[s]), jnp.asarray(z_b[s]), **kw)[0])
      for s in (slice(0, 8), slice(8, 16))])
  _far(full, per_half, rtol=0.2)


def test_gradient_is_finite_even_for_collapsed_embeddings():
  z_a, z_b = _data(6)
  grad_fn = jax.jit(jax.grad(lambda a, b: vicreg_loss(a, b)[0], argnums=(0, 1)))
  for a, b in [(z_a, z_b), (np.ones_like(z_a), np.ones_like(z_b)),
               (np.zeros_like(z_a), z_b)]:
    g_a, g_b = grad_fn(jnp.asarray(a), jnp.asarray(b))
    assert np.all(np.isfinite(g_a)) and np.all(np.isfinite(g_b))
  g_a, _ = grad_fn(jnp.asarray(z_a), jnp.asarray(z_b))
  assert np.abs(np.asarray(g_a)).sum() > 0


def test_jit_matches_eager():
  z_a, z_b = _data(7)
  eager, _ = vicreg_loss(jnp.asarray(z_a), jnp.asarray(z_b))
  jitted, _ = jax.jit(vicreg_loss)(jnp.asarray(z_a), jnp.asarray(z_b))
  np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-5)


@pytest.mark.parametrize("shape_a,shape_b", [
    ((8, 4), (8, 5)),
    ((8, 4), (7, 4)),
    ((8,), (8,)),
    ((2, 8, 4), (2, 8, 4)),
    ((1, 4), (1, 4)),
])
def test_bad_shapes_raise(shape_a, shape_b):
  with pytest.raises(ValueError):
    vicreg_loss(jnp.zeros(shape_a), jnp.zeros(shape_b))


def test_covariance_products_run_in_float32_on_every_backend():
  """The covariance's products, forward and in the gradient, ask for
  HIGHEST precision: JAX's default for float32 matmuls is one bfloat16 pass
  on TPUs and TF32 on recent GPUs. XLA:CPU computes float32 whatever is
  asked, so the lowered program is read instead of the numbers."""
  z_a, z_b = _data(0, 8, 4)
  grad = jax.jit(jax.grad(lambda a, b: vicreg_loss(a, b)[0], argnums=(0, 1)))
  text = grad.lower(jnp.asarray(z_a), jnp.asarray(z_b)).as_text()
  dots = [line for line in text.splitlines() if "dot_general" in line]
  # Per branch: the covariance, and its two products in the gradient.
  assert len(dots) == 6, dots
  for line in dots:
    assert "precision = [HIGHEST, HIGHEST]" in line, line
