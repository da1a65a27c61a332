"""A 2-process job on localhost loses process 1 (kill -9) mid-pretraining.

Process 0 prints one line (the lost process, the last complete checkpoint,
the command) and exits 75 at once, writing nothing more; the same command,
rerun on both processes, resumes from that checkpoint, logs again the losses
the job had logged after it, and logs every step once.
"""

import json
import os
import shlex
import subprocess
import sys
import time

import jax
import numpy as np

from vicreg_haiku.training import parallel

from test_multihost import _env, _free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 300
STEPS, CHECKPOINT_EVERY, KILL_AT = 8, 4, 6
# Tiny and short: most of the time is starting TF and JAX and compiling.
FLAGS = (
    "--config=configs/digits.py", "--config.mode=pretrain",
    "--config.distributed=True", "--config.model.width=4",
    "--config.model.expander_dims=(32,32,32)", "--config.dataset.image_size=8",
    "--config.pretrain.batch_size=64", "--config.pretrain.epochs=2",
    "--config.pretrain.warmup_epochs=1", f"--config.pretrain.max_steps={STEPS}",
    "--config.pretrain.log_every_steps=1",
    f"--config.pretrain.checkpoint_every_steps={CHECKPOINT_EVERY}",
    "--config.pretrain.rankme_examples=64",
    "--config.pretrain.rankme_every_steps=1000",
    "--config.pretrain.neighbour_images=0")
COMPARED = ("loss", "invariance", "variance", "covariance", "lr")


def _start(workdir) -> list[subprocess.Popen]:
  """Both processes of a job running `FLAGS` in `workdir`."""
  address = f"127.0.0.1:{_free_port()}"
  return [subprocess.Popen(
      [sys.executable, "launch.py", *FLAGS, f"--workdir={workdir}"], cwd=ROOT,
      env=_env(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(i)),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for i in range(2)]


def _finish(procs) -> list[tuple[int, str, str]]:
  try:
    outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def _steps(workdir) -> list[int]:
  """The complete checkpoints' steps (orbax renames a finished one's
  temporary directory to its step)."""
  directory = os.path.join(workdir, "pretrain", "checkpoints")
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(name) for name in names if name.isdigit())


def _metrics(workdir) -> list[dict]:
  path = os.path.join(workdir, "pretrain", "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.endswith("\n")]


def _kill_second_between_checkpoints(procs, workdir) -> list[dict]:
  """kill -9 of process 1 once the first checkpoint is complete and process
  0 has logged KILL_AT (the next save is later); what it had logged."""
  deadline = time.monotonic() + TIMEOUT_S
  while not (_steps(workdir) and any(r["step"] >= KILL_AT
                                     for r in _metrics(workdir))):
    assert procs[0].poll() is None, "the job ended before the kill"
    assert time.monotonic() < deadline, f"step {KILL_AT} not reached in time"
    time.sleep(0.05)
  procs[1].kill()
  return _metrics(workdir)


def test_a_lost_process_is_one_line_and_the_rerun_resumes(tmp_path):
  procs = _start(tmp_path)
  logged = _kill_second_between_checkpoints(procs, tmp_path)
  (code, _, err), (killed, _, _) = _finish(procs)

  assert killed == -9
  assert code == 75, err[-4000:]
  assert "Traceback" not in err, err[-4000:]
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert errors == [err.splitlines()[-1]], err[-4000:]
  (line,) = errors
  (last,) = _steps(tmp_path)
  command = shlex.join(["python", "launch.py", *FLAGS, f"--workdir={tmp_path}"])
  assert line.startswith("error: pretrain: lost process 1 of 2 ("), line
  assert f"; its last complete checkpoint is step {last}; " in line, line
  assert line.endswith(f"(with its JAX_* variables as before): {command}")
  assert not (tmp_path / "results.json").exists()  # nothing after the loss

  rerun = _finish(_start(tmp_path))
  for i, (code, out, err) in enumerate(rerun):
    assert code == 0, f"process {i}:\n{out[-2000:]}\n{err[-4000:]}"
  assert f"pretrain: resuming from step {last}" in rerun[0][1]
  metrics = _metrics(tmp_path)
  # Each step once: what was logged after the checkpoint is dropped first.
  assert [r["step"] for r in metrics] == list(range(1, STEPS + 1))
  replayed = [r for r in logged if r["step"] > last]
  assert len(replayed) >= KILL_AT - CHECKPOINT_EVERY
  for before in logged:
    after = metrics[before["step"] - 1]
    for key in COMPARED:
      np.testing.assert_allclose(after[key], before[key], rtol=1e-5,
                                 err_msg=f"step {before['step']}: {key}")


GLOO = ValueError("UNKNOWN: Gloo all-reduce failed: [external/gloo/gloo/"
                  "transport/tcp/pair.cc:538] Read error [10.0.0.3]:21898: "
                  "Connection reset by peer")


def test_the_lost_process_is_named_when_known(monkeypatch):
  """By the coordination service's message; of two processes, the other; of
  more, a collective's error says only a peer's address."""
  monkeypatch.setattr(jax, "process_count", lambda: 4)
  barrier = jax.errors.JaxRuntimeError(
      "INTERNAL: Barrier failed because: task is set to ERROR: UNAVAILABLE: "
      "Task 3 heartbeat timeout. This indicates that the remote task has "
      "failed\nmore")
  assert parallel.lost_peer_text(barrier) == (
      "lost process 3 of 4 (INTERNAL: Barrier failed because: task is set to "
      "ERROR: UNAVAILABLE: Task 3 heartbeat timeout. This indicates that the "
      "remote task has failed)")
  assert parallel.lost_peer_text(GLOO).startswith(
      "lost one of the 4 processes (UNKNOWN: Gloo all-reduce failed: ")
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert parallel.lost_peer_text(GLOO).startswith("lost process 0 of 2 (")


def test_a_lost_peer_is_a_failed_collective_in_a_job(monkeypatch):
  """Not a process's own failure, nor any error outside a job (those keep
  their traceback)."""
  assert not parallel.lost_peer(GLOO)  # no job here
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  assert parallel.lost_peer(GLOO)
  assert not parallel.lost_peer(
      jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: out of memory"))
  assert not parallel.lost_peer(ValueError("a bad value"))
