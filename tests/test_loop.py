"""The training loop's own traffic between host and device."""

import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from vicreg_haiku.models import transforms
from vicreg_haiku.training import loop
from vicreg_haiku.training import parallel


@jax.jit
def _step(state, batch):
  params = {"w": state.params["w"] + jnp.mean(batch["x"])}
  metrics = {"finite": jnp.array(True), "loss": jnp.sum(params["w"])}
  return state._replace(step=state.step + 1, params=params), metrics


def _initial():
  return transforms.TrainState(step=jnp.zeros([], jnp.int32),
                               params={"w": jnp.zeros(3)},
                               net_state={},
                               opt_state=())


def _ones(start_step):
  del start_step
  return itertools.repeat({"x": np.ones((2, 3), np.float32)})


def test_the_loop_sends_the_device_only_what_it_means_to(tmp_path):
  """No implicit host-to-device transfer (each a copy and a sync the loop did
  not plan: a NumPy batch handed to the step, a Python number made a device
  array per step). The batch goes in explicitly; metrics come out (one step
  late) and checkpoints are written by explicit copies too. XLA:CPU does not
  guard device-to-host reads (its device memory is host memory), so a stray
  float(metric) would pass here; accelerators refuse it under this guard.
  """
  config = loop.LoopConfig(
      phase="pretrain", phase_dir=str(tmp_path), total_steps=6,
      examples_per_step=2, log_every_steps=2, checkpoint_every_steps=3,
      tensorboard=False)
  initial = _initial()  # made before the guard: jnp.zeros is a transfer
  with jax.transfer_guard("disallow"):
    final = loop.run(config, initial, _step, _ones, parallel.make_mesh())
  assert int(final.step) == 6
  np.testing.assert_array_equal(jax.device_get(final.params["w"]), [6.0] * 3)
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    logged = [json.loads(line) for line in f]
  assert [r["step"] for r in logged] == [2, 4, 6]
  assert [r["loss"] for r in logged] == [6.0, 12.0, 18.0]


def test_time_based_saves_fall_on_log_steps(tmp_path, monkeypatch):
  """checkpoint_every_seconds is asked at log steps only, where process 0's
  clock decides for every process (orbax's multi-host save is collective:
  processes deciding on their own clocks would save different steps and
  wait for each other). With 0 seconds: every log step, no other."""
  config = loop.LoopConfig(
      phase="pretrain", phase_dir=str(tmp_path), total_steps=7,
      examples_per_step=2, log_every_steps=3, checkpoint_every_steps=100,
      checkpoint_every_seconds=0.0, tensorboard=False)
  saved = []
  save = loop.checkpointing.save
  monkeypatch.setattr(loop.checkpointing, "save", lambda mngr, step, state: (
      saved.append(step), save(mngr, step, state)))
  loop.run(config, _initial(), _step, _ones, parallel.make_mesh())
  assert saved == [3, 6, 7]
