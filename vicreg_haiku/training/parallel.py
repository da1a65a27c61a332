"""One code path for 1..N devices and hosts: a 1-D `data` mesh.

The batch is sharded over `data`; params and BN state are replicated. Code is
written for the global array, so every reduction over the batch (BatchNorm
statistics, the VICReg variance and covariance) is over the global batch: XLA
adds the collectives.

The pretraining's weight update is sharded over `data` too (Xu et al. 2020,
"Automatic Cross-Replica Sharding of Weight Update in Data-Parallel
Training"; ZeRO-1): each device keeps a slice of the optimizer state and
updates that slice of the params, so the gradients' all-reduce becomes a
reduce-scatter and the new params an all-gather, and no device repeats the
others' per-parameter work.
"""

import math
import os
import re

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
# The status codes of a cross-process collective that lost its peer (gloo on
# CPUs: a ValueError "UNKNOWN: Gloo all-reduce failed: ... Connection reset
# by peer"; a step's collective: a JaxRuntimeError) or of the coordination
# service. A process's own failures (RESOURCE_EXHAUSTED, INVALID_ARGUMENT)
# are not among them: that process reports them itself.
_LOST_PEER_STATUS = re.compile(
    r"^(UNKNOWN|INTERNAL|UNAVAILABLE|ABORTED|DEADLINE_EXCEEDED|CANCELLED): ")
# How the coordination service names a task it lost.
_LOST_TASK = re.compile(r"Task (\d+) heartbeat timeout")
# Leaves with fewer elements (4 Mi: a 2048 x 2048 matrix) stay replicated in
# a sharded update: the expander's matrices are split, no convolution kernel
# of a ResNet-50 nor any matrix of a ViT-S. A convolution's sharded
# gradient makes XLA split the weight-gradient convolution itself; the TPU
# compiler estimates that dearer than the update it saves (ResNet-50 on a
# v5e-8: 528 ms a step with every leaf from 16 Ki elements split, 404 ms
# with the expander's alone; BENCHMARKS.md, "TPU slices").
MIN_SHARDED_SIZE = 2**22


def maybe_initialize_distributed(requested: bool) -> None:
  """Joins the multi-host job when asked to (before any other JAX call).

  On Cloud TPU, SLURM, Open MPI and Kubernetes, jax.distributed.initialize()
  finds the coordinator, process count and process id itself. Elsewhere
  (several GPU hosts, or processes on one machine) set JAX_COORDINATOR_ADDRESS
  (host:port of process 0, which JAX reads itself), JAX_NUM_PROCESSES and
  JAX_PROCESS_ID (which JAX does not read; passed on here) on every process.
  """
  if requested:
    env = {key: int(os.environ[name]) for key, name in (
        ("num_processes", "JAX_NUM_PROCESSES"),
        ("process_id", "JAX_PROCESS_ID")) if os.environ.get(name)}
    jax.distributed.initialize(**env)


def lost_peer(error: BaseException) -> bool:
  """Whether `error` says that a collective or the coordination service lost
  another process of a multi-process job."""
  # Cheap checks first, and none that would start a backend: this also sees
  # errors raised before JAX started.
  return (isinstance(error, (jax.errors.JaxRuntimeError, ValueError))
          and bool(_LOST_PEER_STATUS.match(str(error)))
          and jax.distributed.is_initialized() and jax.process_count() > 1)


def lost_peer_text(error: BaseException) -> str:
  """'lost process P of N (cause)': P as the error names it, or of two
  processes the other one (a collective's error names a peer's address, not
  its process)."""
  named = _LOST_TASK.search(str(error))
  count = jax.process_count()
  if named:
    lost = f"process {named.group(1)} of {count}"
  elif count == 2:
    lost = f"process {1 - jax.process_index()} of 2"
  else:
    lost = f"one of the {count} processes"
  return f"lost {lost} ({str(error).splitlines()[0]})"


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
  return jax.device_put(tree, replicated_sharding(mesh))


def update_sharding(tree, mesh: Mesh):
  """Per leaf of `tree` (arrays or shape structs), where its weight update
  runs: split over `data` along its first axis that the device count
  divides, replicated when it is small or no axis divides."""

  def one(leaf):
    if math.prod(leaf.shape) >= MIN_SHARDED_SIZE:
      for axis, size in enumerate(leaf.shape):
        if size % mesh.size == 0:
          return NamedSharding(mesh, P(*[None] * axis, DATA_AXIS))
    return replicated_sharding(mesh)

  return jax.tree.map(one, tree)


def feature_sharding(z, mesh: Mesh) -> NamedSharding:
  """[N, D] embeddings split over `data` by feature where the device count
  divides D (else replicated): every column still holds the whole batch,
  and the loss's D x D covariance is computed in slices of its rows."""
  if z.shape[-1] % mesh.size:
    return replicated_sharding(mesh)
  return NamedSharding(mesh, P(None, DATA_AXIS))


def state_sharding(state, mesh: Mesh):
  """A TrainState's placement for a sharded update: the optimizer state as
  update_sharding, everything else (step, params, BN state) replicated."""
  placement = jax.tree.map(lambda _: replicated_sharding(mesh), state)
  return placement._replace(opt_state=update_sharding(state.opt_state, mesh))


def global_batch(local_batch, mesh: Mesh):
  """This process's slice of the batch -> one global array sharded on `data`."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x),
      local_batch)


def to_host(tree):
  """A (possibly sharded, multi-host) tree as NumPy arrays on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def broadcast_text(text: str, max_bytes: int = 4096) -> str:
  """Process 0's `text` on every process (a barrier too)."""
  data = np.zeros(max_bytes, np.uint8)
  encoded = text.encode()[:max_bytes]
  data[:len(encoded)] = np.frombuffer(encoded, np.uint8)
  data = np.asarray(multihost_utils.broadcast_one_to_all(data))
  return bytes(data).rstrip(b"\0").decode(errors="replace")


def is_chief() -> bool:
  """Process 0 writes logs, TensorBoard and results; all write checkpoints."""
  return jax.process_index() == 0
