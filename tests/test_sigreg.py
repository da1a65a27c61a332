"""SIGReg and LeJEPA's loss against lightly's (the PyPI reference, torch) and
against a NumPy quadrature written from the formula; VICReg with local views
against VICRegL's global criterion written out in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from lightly.loss import lejepa_loss as lightly_lejepa

from vicreg_haiku.training import losses


def _embeddings(seed: int, n: int, d: int, views: int = 1) -> np.ndarray:
  """[views, n, d] float32 far from Gaussian in places: per-dimension
  scales from 0.05 to 4 (projections beyond t_max's reach and near 0),
  correlated columns, a shifted mean, one heavy-tailed column."""
  rng = np.random.default_rng(seed)
  mix = np.eye(d) + 0.4 * rng.normal(size=(d, d))
  z = rng.normal(size=(views, n, d)) @ mix * rng.uniform(0.05, 4.0, size=d)
  z[..., 0] = rng.standard_t(2, size=(views, n))
  return (z + rng.normal(size=d)).astype(np.float32)


def _directions(seed: int, d: int, m: int) -> np.ndarray:
  a = np.random.default_rng(seed + 100).normal(size=(d, m))
  return (a / np.linalg.norm(a, axis=0)).astype(np.float32)


def _lightly_sigreg(directions: np.ndarray, t_max=3.0, knots=17):
  """lightly's SIGReg with our directions in place of its draw."""
  module = lightly_lejepa.SIGReg(knots=knots, t_max=t_max,
                                 num_vectors=directions.shape[1])
  fixed = torch.from_numpy(directions).double()
  module._generate_unit_vectors = lambda *args: fixed  # pylint: disable=protected-access
  return module.double()


def _numpy_epps_pulley(z, directions, t_max=3.0, knots=17):
  """The formula on the symmetric grid: N * trapz over [-t_max, t_max] of
  |mean exp(i t x) - exp(-t^2/2)|^2 exp(-t^2/2), mean over directions."""
  z = np.asarray(z, np.float64)
  x = z @ directions.astype(np.float64)  # [N, M]
  t = np.linspace(-t_max, t_max, 2 * knots - 1)
  ecf = np.mean(np.exp(1j * x[..., None] * t), axis=0)  # [M, T]
  window = np.exp(-0.5 * t ** 2)
  integrand = np.abs(ecf - window) ** 2 * window
  return np.mean(np.trapezoid(integrand, t, axis=-1)) * z.shape[0]


@pytest.mark.parametrize("n,d,m", [(64, 16, 32), (7, 5, 3), (256, 32, 128)])
def test_sigreg_matches_the_formula_and_lightly(n, d, m):
  z = _embeddings(n, n, d)[0]
  a = _directions(n, d, m)
  ours = float(losses.sigreg(jnp.asarray(z), jnp.asarray(a)))
  np.testing.assert_allclose(ours, _numpy_epps_pulley(z, a), rtol=2e-5)
  reference = _lightly_sigreg(a)(torch.from_numpy(z).double()).item()
  np.testing.assert_allclose(ours, reference, rtol=2e-5)


@pytest.mark.parametrize("t_max,knots", [(5.0, 17), (3.0, 9), (2.0, 33)])
def test_sigreg_grid_settings(t_max, knots):
  z = _embeddings(3, 48, 12)[0]
  a = _directions(3, 12, 16)
  ours = float(losses.sigreg(jnp.asarray(z), jnp.asarray(a), t_max=t_max,
                             knots=knots))
  reference = _lightly_sigreg(a, t_max, knots)(
      torch.from_numpy(z).double()).item()
  np.testing.assert_allclose(ours, reference, rtol=2e-5)
  np.testing.assert_allclose(ours, _numpy_epps_pulley(z, a, t_max, knots),
                             rtol=2e-5)


def test_sigreg_gradient_matches_lightly():
  z = _embeddings(4, 40, 10)[0]
  a = _directions(4, 10, 24)
  ours = jax.grad(lambda x: losses.sigreg(x, jnp.asarray(a)))(jnp.asarray(z))
  zt = torch.from_numpy(z).double().requires_grad_()
  _lightly_sigreg(a)(zt).backward()
  np.testing.assert_allclose(np.asarray(ours), zt.grad.numpy(), rtol=1e-4,
                             atol=1e-6 * np.abs(zt.grad.numpy()).max())


def test_sigreg_is_small_for_gaussians_and_over_the_global_batch():
  """Standard normal embeddings score O(1) (N times a vanishing integral)
  and a shifted, squeezed batch
  far above; and the statistic of the whole batch is not the mean of its
  halves' (a per-device SIGReg, lightly#1920's bug, would be)."""
  rng = np.random.default_rng(0)
  a = jnp.asarray(_directions(0, 16, 64))
  gaussian = rng.normal(size=(512, 16)).astype(np.float32)
  squeezed = 0.2 * gaussian + 1.0
  low = float(losses.sigreg(jnp.asarray(gaussian), a))
  high = float(losses.sigreg(jnp.asarray(squeezed), a))
  assert low < 3.0 and high > 50 * low
  z = jnp.asarray(_embeddings(5, 64, 16)[0])
  halves = (losses.sigreg(z[:32], a) + losses.sigreg(z[32:], a)) / 2
  assert abs(float(losses.sigreg(z, a)) - float(halves)) > 0.05 * float(
      halves)


def test_random_directions_are_unit_and_keyed():
  key = jax.random.key(3)
  a = losses.random_directions(key, 20, 50)
  assert a.shape == (20, 50)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(a), axis=0), 1.0,
                             rtol=1e-6)
  np.testing.assert_array_equal(a, losses.random_directions(key, 20, 50))
  assert not np.allclose(a, losses.random_directions(jax.random.key(4), 20,
                                                     50))


@pytest.mark.parametrize("local", [1, 6])
def test_lejepa_loss_matches_lightly(local):
  """Loss and gradients against lightly's LeJEPALoss (global views first;
  every view, global ones included, predicts the global views' mean)."""
  views = _embeddings(7 + local, 32, 12, views=2 + local)
  a = _directions(7, 12, 20)
  lambd = 0.3  # far from 0 and 1, so a swapped convention shows

  def ours(z):
    return losses.lejepa_loss(list(z[:2]), list(z[2:]), jnp.asarray(a),
                              lambd=lambd)[0]

  value, grad = jax.value_and_grad(ours)(jnp.asarray(views))
  reference = lightly_lejepa.LeJEPALoss(lambda_param=lambd,
                                        sigreg_num_vectors=a.shape[1])
  reference.sigreg = _lightly_sigreg(a)
  zt = torch.from_numpy(views).double().requires_grad_()
  expected = reference(global_proj=zt[:2], local_proj=zt[2:])
  expected.backward()
  np.testing.assert_allclose(float(value), expected.item(), rtol=2e-5)
  np.testing.assert_allclose(np.asarray(grad), zt.grad.numpy(), rtol=1e-4,
                             atol=1e-6 * np.abs(zt.grad.numpy()).max())


def test_lejepa_terms():
  views = _embeddings(9, 16, 8, views=4)
  a = _directions(9, 8, 10)
  loss, terms = losses.lejepa_loss(list(views[:2]), list(views[2:]),
                                   jnp.asarray(a), lambd=0.05)
  centre = views[:2].astype(np.float64).mean(0)
  prediction = np.mean((views - centre) ** 2)
  regulariser = np.mean([_numpy_epps_pulley(z, a) for z in views])
  np.testing.assert_allclose(float(terms["prediction"]), prediction,
                             rtol=1e-5)
  np.testing.assert_allclose(float(terms["sigreg"]), regulariser, rtol=2e-5)
  np.testing.assert_allclose(float(loss),
                             0.95 * prediction + 0.05 * regulariser,
                             rtol=2e-5)


def _numpy_vicregl_global(views, globals_=2, sim=25.0, std=25.0, cov=1.0,
                          eps=1e-4):
  """VICRegL's global criterion (vicregl.py, global_loss) in float64, with
  the covariance's mean over views doubled (VICReg's two-view sum)."""
  views = [np.asarray(z, np.float64) for z in views]
  pairs = [np.mean((views[i] - views[j]) ** 2)
           for i in range(globals_) for j in range(len(views)) if j != i]
  variances, covariances = [], []
  for z in views:
    n, d = z.shape
    c = z - z.mean(0)
    variances.append(np.mean(np.maximum(0, 1 - np.sqrt(
        (c ** 2).sum(0) / (n - 1) + eps))))
    k = c.T @ c / (n - 1)
    covariances.append(((k ** 2).sum() - (np.diag(k) ** 2).sum()) / d)
  terms = np.mean(pairs), np.mean(variances), 2 * np.mean(covariances)
  return sim * terms[0] + std * terms[1] + cov * terms[2], terms


def test_vicreg_with_local_views_is_vicregl_global_criterion():
  views = _embeddings(11, 24, 10, views=5)
  # Narrow local views so their variance hinges differ from the globals'.
  views[2:] *= 0.3
  loss, terms = losses.vicreg_multi_view_loss(list(views[:2]),
                                              list(views[2:]))
  expected, expected_terms = _numpy_vicregl_global(list(views))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  for name, value in zip(("invariance", "variance", "covariance"),
                         expected_terms):
    np.testing.assert_allclose(float(terms[name]), value, rtol=1e-5)


def test_vicreg_with_no_local_views_is_vicreg():
  views = _embeddings(12, 24, 10, views=2)
  multi, multi_terms = losses.vicreg_multi_view_loss(list(views), [])
  two, two_terms = losses.vicreg_loss(*views)
  np.testing.assert_array_equal(multi, two)
  for name in two_terms:
    np.testing.assert_array_equal(multi_terms[name], two_terms[name])
