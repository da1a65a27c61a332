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


def _job(script, args_of):
  """Both processes of a 2-process job on localhost; their exit logs."""
  address = f"127.0.0.1:{_free_port()}"
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(HERE, script), *args_of(i)],
      env=_env(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(i)),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:
    logs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for i, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == 0, f"process {i} failed:\n{log[-4000:]}"


@pytest.mark.parametrize("split", ["train", "no_such_split"])
def test_a_folder_is_indexed_once_for_the_job(tmp_path, split):
  """Process 0 lists and decodes the folder; process 1 reads its index.
  A bad split: both processes stop with process 0's one-line error."""
  import json  # pylint: disable=g-import-not-at-top
  import folder_fake  # pylint: disable=g-import-not-at-top
  folder_fake.image_folder(str(tmp_path / "root"), splits=("train",),
                           per_class=2)
  outs = [tmp_path / f"process_{i}.json" for i in range(2)]
  _job("multihost_index.py",
       lambda i: [str(outs[i]), str(tmp_path / "root"), split])
  results = [json.loads(out.read_text()) for out in outs]
  if split == "train":
    assert [r["checked"] for r in results] == [6, 0]
    assert [r["error"] for r in results] == [None, None]
  else:
    assert results[0]["error"] == results[1]["error"]
    assert "does not exist" in results[0]["error"]
    assert results[1]["checked"] == 0
