"""One pretraining step on a fixed global batch, on however many devices the
process sees; writes the loss terms, grad norm, new BN state and params to an .npz.

Run by tests/test_parallel.py in subprocesses with 1 and 8 simulated CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count=N), with the loss
named by the second argument (config.loss.name).
"""

import sys

import haiku as hk
import jax
import numpy as np

from vicreg_haiku.models import transforms
from vicreg_haiku.training import optimizers
from vicreg_haiku.training import parallel
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import defaults


def tiny_config(loss: str):
  config = defaults.base_config()
  config.loss.name = loss
  config.model.width = 4
  # 2048 x 2048 is the smallest layer whose update is sharded
  # (parallel.MIN_SHARDED_SIZE).
  config.model.expander_dims = (2048, 2048, 16)
  config.dataset.image_size = 8
  return config


def main(out_path: str, loss: str) -> None:
  config = tiny_config(loss)
  mesh = parallel.make_mesh()
  model = transforms.pretrain_model(config)
  schedule = optimizers.warmup_cosine(0.3, 16, 0, 10)
  optimizer = optimizers.lars(schedule, weight_decay=1e-4,
                              trust_coefficient=0.02)
  state = pretrain_step.init_state(config, model, optimizer)
  rng = np.random.default_rng(0)
  batch = {k: rng.normal(size=(16, 8, 8, 3)).astype(np.float32)
           for k in ("view_a", "view_b")}

  state = jax.device_put(state, parallel.state_sharding(state, mesh))
  step = pretrain_step.jit_step(config, model, optimizer, schedule, mesh)
  new_state, metrics = step(state, parallel.global_batch(batch, mesh))
  flat = {"devices": np.asarray(jax.device_count())}
  flat.update({f"metric/{k}": np.asarray(v) for k, v in metrics.items()})
  # The updated params carry the gradients (through LARS); grad_norm is in
  # the metrics.
  for prefix, tree in (("param", new_state.params),
                       ("bn", new_state.net_state)):
    for module, name, value in hk.data_structures.traverse(tree):
      flat[f"{prefix}/{module}/{name}"] = np.asarray(value)
  # The optimizer state (LARS's momentum), and the fraction of each leaf
  # that one device holds.
  for path, value in jax.tree_util.tree_flatten_with_path(
      new_state.opt_state)[0]:
    key = jax.tree_util.keystr(path)
    flat[f"opt/{key}"] = np.asarray(value)
    flat[f"held/{key}"] = np.asarray(
        value.addressable_shards[0].data.size / max(value.size, 1))
  np.savez(out_path, **flat)


if __name__ == "__main__":
  main(*sys.argv[1:])
