"""Mixed precision with jmp: params and loss in float32, BatchNorm in float32."""

import haiku as hk
import jax.numpy as jnp
import jmp

from vicreg_haiku import networks

PRECISIONS = ("float32", "bfloat16")


def set_compute_dtype(name: str) -> jmp.Policy:
  """Sets the Haiku policies of the model's modules; returns the model policy.

  Convolutions and dense layers compute in `name`; their params stay float32.
  BatchNorm computes in float32 and hands the compute dtype on, so statistics
  never accumulate in bfloat16.
  """
  if name not in PRECISIONS:
    raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
  compute = jnp.dtype(name)
  model_policy = jmp.Policy(param_dtype=jnp.float32, compute_dtype=compute,
                            output_dtype=jnp.float32)
  norm_policy = jmp.Policy(param_dtype=jnp.float32, compute_dtype=jnp.float32,
                           output_dtype=compute)
  for module in (networks.ResNet18, networks.ResNet50, networks.Expander):
    hk.mixed_precision.set_policy(module, model_policy)
  hk.mixed_precision.set_policy(networks.BatchNorm, norm_policy)
  return model_policy
