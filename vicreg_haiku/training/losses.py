"""The VICReg loss, with the official implementation's semantics.

All statistics are over the leading (batch) axis of the arrays passed in. Under
`jax.jit` with the batch sharded over a mesh, that axis is the GLOBAL batch:
XLA inserts the cross-device reductions, exactly as the official code's
all-gather does. Never call this per device.
"""

from typing import Mapping

import jax
import jax.numpy as jnp


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
