"""Two processes on localhost (1 CPU device each, gloo collectives) give the
1-process result: the same losses over 3 steps and the same final params."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(__file__)
SCRIPT = os.path.join(HERE, "multihost_steps.py")
TIMEOUT_S = 300
# One CPU device per process. Most of the time is XLA:CPU compiling; the
# lowest backend optimization level cuts it by about a third (all three runs
# use it, so they are compared like for like).
XLA_FLAGS = ("--xla_force_host_platform_device_count=1 "
             "--xla_backend_optimization_level=0")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(**extra) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith("JAX_") or k == "JAX_ENABLE_X64"}
  env.update(JAX_PLATFORMS="cpu",
             XLA_FLAGS=XLA_FLAGS)
  env.update(extra)
  return env


def _run_all(tmp) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
  """The 1-process run and the 2 processes of the job, all at once (the
  machine's cores are few; most of the time is XLA compiling)."""
  address = f"127.0.0.1:{_free_port()}"
  envs = [_env()] + [
      _env(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
           JAX_PROCESS_ID=str(i)) for i in range(2)]
  outs = [tmp / "single.npz", tmp / "process_0.npz", tmp / "process_1.npz"]
  procs = [subprocess.Popen([sys.executable, SCRIPT, str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
           for env, out in zip(envs, outs)]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=TIMEOUT_S)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for out, p, log in zip(outs, procs, logs):
    assert p.returncode == 0, f"{out.stem} failed:\n{log[-4000:]}"
  single, *multi = [dict(np.load(out)) for out in outs]
  return single, multi


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("multihost")
  return _run_all(tmp)


def test_two_processes_joined_one_job(runs):
  single, multi = runs
  assert int(single["process_count"]) == 1
  assert int(single["device_count"]) == 1
  for result in multi:
    assert int(result["process_count"]) == 2
    assert int(result["device_count"]) == 2
    assert int(result["local_device_count"]) == 1


@pytest.mark.parametrize("prefix", ["step0/metric/", "step1/metric/",
                                    "step2/metric/", "param/", "bn/"])
def test_two_processes_match_one(runs, prefix):
  single, multi = runs
  keys = [k for k in single if k.startswith(prefix)]
  assert keys
  for i, result in enumerate(multi):
    for key in keys:
      np.testing.assert_allclose(result[key], single[key], rtol=1e-5,
                                 atol=1e-6, err_msg=f"process {i}: {key}")


def test_losses_change_over_the_steps(runs):
  """Three real steps: the params moved, so the loss differs between steps."""
  single, _ = runs
  losses = [float(single[f"step{i}/metric/loss"]) for i in range(3)]
  assert all(np.isfinite(losses))
  assert len(set(losses)) == 3
