"""Three pretraining steps on fixed global batches, as one process of a job.

Run by tests/test_multihost.py: once alone, and as each of 2 processes on
localhost (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID set;
1 CPU device each; cross-process collectives through gloo). Every process
feeds its rows of the global batch through parallel.global_batch and runs
the real jitted step; the metrics of each step and the final params and BN
state (gathered with parallel.to_host) go to an .npz.
"""

import os
import sys

import haiku as hk
import jax
import numpy as np

from vicreg_haiku.models import transforms
from vicreg_haiku.training import optimizers
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step

import one_pretrain_step

GLOBAL_BATCH = 16
STEPS = 3


def global_batches() -> list[dict[str, np.ndarray]]:
  """The same seeded global batches on every process."""
  rng = np.random.default_rng(0)
  return [{k: rng.normal(size=(GLOBAL_BATCH, 8, 8, 3)).astype(np.float32)
           for k in ("view_a", "view_b")} for _ in range(STEPS)]


def main(out_path: str) -> None:
  parallel.maybe_initialize_distributed("JAX_COORDINATOR_ADDRESS" in os.environ)
  config = one_pretrain_step.tiny_config("vicreg")
  mesh = parallel.make_mesh()
  index, count = jax.process_index(), jax.process_count()
  rows = GLOBAL_BATCH // count
  model = transforms.pretrain_model(config)
  schedule = optimizers.warmup_cosine(0.3, GLOBAL_BATCH, 1, 10)
  optimizer = optimizers.lars(schedule, weight_decay=1e-4,
                              trust_coefficient=0.02)
  state = pretrain_step.init_state(config, model, optimizer)
  state = jax.device_put(state, parallel.state_sharding(state, mesh))
  step = pretrain_step.jit_step(config, model, optimizer, schedule, mesh)
  flat = {"process_count": np.asarray(count),
          "device_count": np.asarray(jax.device_count()),
          "local_device_count": np.asarray(jax.local_device_count())}
  for i, batch in enumerate(global_batches()):
    local = {k: v[index * rows:(index + 1) * rows] for k, v in batch.items()}
    state, metrics = step(state, parallel.global_batch(local, mesh))
    for k, v in parallel.to_host(metrics).items():
      flat[f"step{i}/metric/{k}"] = np.asarray(v)
  state = parallel.to_host(state)
  for prefix, tree in (("param", state.params), ("bn", state.net_state)):
    for module, name, value in hk.data_structures.traverse(tree):
      flat[f"{prefix}/{module}/{name}"] = np.asarray(value)
  np.savez(out_path, **flat)


if __name__ == "__main__":
  main(sys.argv[1])
