"""VICReg's loss, with the official implementation's semantics, and LeJEPA's.

All statistics are over the leading (batch) axis of the arrays passed in. Under
`jax.jit` with the batch sharded over a mesh, that axis is the GLOBAL batch:
XLA inserts the cross-device reductions, exactly as the official code's
all-gather does. Never call this per device.
"""

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _off_diagonal_sq_sum(cov: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(cov)) - jnp.sum(jnp.square(jnp.diagonal(cov)))


def _variance_and_covariance(z: jax.Array, eps: float):
  """Hinge on the per-dimension std, and the off-diagonal covariance sum / D."""
  n, d = z.shape
  centred = z - jnp.mean(z, axis=0)
  var = jnp.sum(jnp.square(centred), axis=0) / (n - 1)  # unbiased, as torch.var
  std = jnp.sqrt(var + eps)
  variance = jnp.mean(jax.nn.relu(1.0 - std))
  # HIGHEST: float32 products. JAX's default for float32 is one bfloat16
  # pass on TPUs and TF32 on recent GPUs, which would undo the upcast below.
  cov = jnp.matmul(centred.T, centred,
                   precision=jax.lax.Precision.HIGHEST) / (n - 1)
  covariance = _off_diagonal_sq_sum(cov) / d
  return variance, covariance


def vicreg_loss(
    z_a: jax.Array,
    z_b: jax.Array,
    *,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> tuple[jax.Array, Mapping[str, jax.Array]]:
  """VICReg loss of two [N, D] embedding batches.

  Returns the weighted total and the three unweighted terms, all float32
  whatever the input dtype (bfloat16 embeddings are upcast first, and the
  covariance products run in float32 on every backend: the covariance of
  8192-d embeddings is not safe in bfloat16).
  """
  if z_a.shape != z_b.shape or z_a.ndim != 2:
    raise ValueError(
        f"vicreg_loss expects two [N, D] arrays of one shape, got {z_a.shape} "
        f"and {z_b.shape}")
  if z_a.shape[0] < 2:
    raise ValueError("vicreg_loss needs a batch of at least 2 for the variance")
  z_a = z_a.astype(jnp.float32)
  z_b = z_b.astype(jnp.float32)
  invariance = jnp.mean(jnp.square(z_a - z_b))
  var_a, cov_a = _variance_and_covariance(z_a, eps)
  var_b, cov_b = _variance_and_covariance(z_b, eps)
  variance = (var_a + var_b) / 2
  covariance = cov_a + cov_b
  loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
  return loss, {
      "invariance": invariance,
      "variance": variance,
      "covariance": covariance,
  }


def vicreg_multi_view_loss(
    global_views: Sequence[jax.Array],
    local_views: Sequence[jax.Array],
    *,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> tuple[jax.Array, Mapping[str, jax.Array]]:
  """VICReg over two global and any number of local [N, D] embeddings.

  The pairing is VICRegL's global criterion (facebookresearch/VICRegL,
  vicregl.py, VICRegL.global_loss): the invariance is the mean over the
  pairs (global view i, any other view j) of the mean squared difference;
  the variance is the mean of every view's hinge. VICRegL averages the
  covariance over views too; here it is the mean times 2, so that the same
  cov_coeff weighs it as VICReg's two-view sum does, and with no local
  views this is vicreg_loss exactly.
  """
  views = [z.astype(jnp.float32) for z in (*global_views, *local_views)]
  invariance = jnp.mean(jnp.stack([
      jnp.mean(jnp.square(views[i] - views[j]))
      for i in range(len(global_views)) for j in range(len(views)) if j != i]))
  variances, covariances = zip(*(_variance_and_covariance(z, eps)
                                 for z in views))
  variance = jnp.mean(jnp.stack(variances))
  covariance = 2 * jnp.mean(jnp.stack(covariances))
  loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
  return loss, {
      "invariance": invariance,
      "variance": variance,
      "covariance": covariance,
  }


def epps_pulley_grid(t_max: float, knots: int) -> tuple[np.ndarray, ...]:
  """The frequencies t (knots of them on [0, t_max]), the standard normal's
  characteristic function exp(-t^2 / 2) at them, and the quadrature weights.

  The integrand |phi_n(t) - phi(t)|^2 exp(-t^2 / 2) is even in t, so its
  integral over [-t_max, t_max] is twice that over [0, t_max]: the weights
  are the trapezoid rule's doubled, dt at the ends and 2 dt inside, times
  the window exp(-t^2 / 2) (the LeJEPA reference, lejepa/univariate/
  epps_pulley.py, EppsPulley.__init__).
  """
  t = np.linspace(0.0, t_max, knots, dtype=np.float64)
  dt = t_max / (knots - 1)
  trapezoid = np.full(knots, 2 * dt)
  trapezoid[[0, -1]] = dt
  phi = np.exp(-0.5 * t ** 2)
  return (t.astype(np.float32), phi.astype(np.float32),
          (trapezoid * phi).astype(np.float32))


def sigreg(z: jax.Array, directions: jax.Array, *, t_max: float = 3.0,
           knots: int = 17) -> jax.Array:
  """LeJEPA's SIGReg: the Epps-Pulley statistic of each 1-d projection
  z @ directions[:, m] over the whole batch, scaled by the batch size N,
  averaged over the M directions.

  z: [N, D] (N: the GLOBAL batch; never call this per device: the
  characteristic function must be the global batch's mean, which is what
  XLA computes from the global array). directions: [D, M], unit columns.
  For each direction, with x = z @ a and phi_n(t) = mean_n exp(i t x_n):
      N * integral |phi_n(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt over [-t_max,
      t_max], by the trapezoid rule on `knots` points of [0, t_max]
  (epps_pulley_grid): the reference's SlicingUnivariateTest(EppsPulley(
  t_max, n_points=knots)) with its mean reduction.
  """
  t, phi, weights = epps_pulley_grid(t_max, knots)
  x = jnp.matmul(z.astype(jnp.float32), directions.astype(jnp.float32),
                 precision=jax.lax.Precision.HIGHEST)
  x_t = x[..., None] * t  # [N, M, knots]
  error = (jnp.square(jnp.mean(jnp.cos(x_t), axis=0) - phi)
           + jnp.square(jnp.mean(jnp.sin(x_t), axis=0)))  # [M, knots]
  return jnp.mean(error @ weights) * z.shape[0]


def random_directions(key: jax.Array, dim: int, count: int) -> jax.Array:
  """[dim, count] directions uniform on the unit sphere (normalised
  Gaussian columns, as the reference draws them)."""
  a = jax.random.normal(key, (dim, count), jnp.float32)
  return a / jnp.linalg.norm(a, axis=0, keepdims=True)


def lejepa_loss(
    global_views: Sequence[jax.Array],
    local_views: Sequence[jax.Array],
    directions: jax.Array,
    *,
    lambd: float = 0.05,
    t_max: float = 3.0,
    knots: int = 17,
) -> tuple[jax.Array, Mapping[str, jax.Array]]:
  """LeJEPA's loss (the paper's Algorithm 2, arXiv 2511.08544 v3):
  (1 - lambd) * prediction + lambd * SIGReg.

  prediction: every view's mean squared distance to the mean of the global
  views' embeddings, over all views (global ones included), examples and
  dimensions. SIGReg: sigreg() of each view's embeddings with the same
  directions, averaged over views. Returns the total and the two
  unweighted terms, float32.
  """
  views = [z.astype(jnp.float32) for z in (*global_views, *local_views)]
  centre = jnp.mean(jnp.stack(views[:len(global_views)]), axis=0)
  prediction = jnp.mean(jnp.stack(
      [jnp.mean(jnp.square(centre - z)) for z in views]))
  regulariser = jnp.mean(jnp.stack(
      [sigreg(z, directions, t_max=t_max, knots=knots) for z in views]))
  loss = (1 - lambd) * prediction + lambd * regulariser
  return loss, {"prediction": prediction, "sigreg": regulariser}
