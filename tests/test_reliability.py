"""Reliability end to end: kill -9, SIGTERM, corrupted checkpoints, non-finite
steps, the collapse watch and refused input, on the tiny digits config.

Every run is `launch.py` with the same flags: in this process through
launch.main (cheap) or, for the kill and SIGTERM, as a subprocess sharing the
test session's compilation cache. One uninterrupted reference run serves
every test.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from absl import flags

import folder_fake
from test_config import load_config
from test_runner import tiny

from vicreg_haiku import pretraining
from vicreg_haiku import runner
from vicreg_haiku.data import datasets
from vicreg_haiku.data import device_augmentations
from vicreg_haiku.evaluation import pretrained
from vicreg_haiku.models import transforms
from vicreg_haiku.training import checkpointing
from vicreg_haiku.training import pretrain_step
from vicreg_haiku.utils import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import launch  # pylint: disable=g-import-not-at-top,wrong-import-position

# tests/test_runner.py's tiny(), as flags; pretrain only, 6 steps.
# WIDTH is the ResNet's: a ViT refuses it (test_vit_end_to_end.BASE).
WIDTH = "--config.model.width=4"
FLAGS = [
    "--config=configs/digits.py", "--config.mode=pretrain",
    WIDTH, "--config.model.expander_dims=(32,32,32)",
    "--config.dataset.image_size=8", "--config.eval_batch_size=256",
    "--config.pretrain.batch_size=64", "--config.pretrain.epochs=2",
    "--config.pretrain.warmup_epochs=1", "--config.pretrain.max_steps=6",
    "--config.pretrain.log_every_steps=2",
    "--config.pretrain.checkpoint_every_steps=2",
    "--config.pretrain.rankme_examples=64",
    "--config.pretrain.rankme_every_steps=2",
    "--config.pretrain.knn_every_steps=0"
]
NOT_COMPARED = {"examples_per_second"}


def run_launch(workdir, *extra, base=FLAGS):
  """launch.py in this process with the flags `base` + `extra`; returns the
  exit code."""
  argv = ["launch.py", *base, f"--workdir={workdir}", *extra]
  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:
    delattr(flags.FLAGS, name)  # the previous run's overrides
  saved, sys.argv = sys.argv, argv  # config_flags reads the overrides here
  try:
    flags.FLAGS(argv)
  finally:
    sys.argv = saved
  try:
    launch.main(["launch.py"])
  except SystemExit as stop:
    return stop.code
  finally:
    flags.FLAGS.unparse_flags()
  return 0


def start_launch(workdir, *extra, base=FLAGS, **kwargs):
  # The session's compilation cache reaches it through
  # $JAX_COMPILATION_CACHE_DIR (conftest.py).
  return subprocess.Popen(
      [sys.executable, "launch.py", *base, *extra, f"--workdir={workdir}"],
      cwd=ROOT, text=True, **kwargs)


def kill_at_first_checkpoint(proc, workdir, timeout_s: float) -> list[int]:
  """kill -9 `proc` as soon as its pretraining's first checkpoint (step 2)
  exists; returns the checkpointed steps, checked to be mid-run."""
  deadline = time.monotonic() + timeout_s
  while not os.path.isdir(os.path.join(ckpt_dir(workdir), "2")):
    assert proc.poll() is None and time.monotonic() < deadline
    time.sleep(0.02)
  os.kill(proc.pid, signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL
  killed_at = steps(workdir)
  assert killed_at and killed_at[-1] < 6, killed_at  # really mid-run
  return killed_at


def metrics(workdir):
  with open(os.path.join(workdir, "pretrain", "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items()
             if k not in NOT_COMPARED} for line in f]


def ckpt_dir(workdir):
  return os.path.join(workdir, "pretrain", "checkpoints")


def steps(workdir):
  return sorted(int(n) for n in os.listdir(ckpt_dir(workdir)) if n.isdigit())


def one_error_line(stderr):
  lines = [l for l in stderr.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, stderr
  return lines[0]


def restore(workdir, step=None):
  """The newest checkpoint that restores, or that of `step`."""
  config = tiny(load_config("digits"), max_steps=6)
  model = transforms.pretrain_model(config)
  optimizer, _ = pretrain_step.make_optimizer(
      config, datasets.pretrain_steps_per_epoch(config))
  target = jax.eval_shape(
      lambda: pretrain_step.init_state(config, model, optimizer))
  manager = checkpointing.manager(ckpt_dir(workdir))
  if step is None:
    return checkpointing.restore_latest(manager, target)
  return manager.restore(step, args=ocp.args.StandardRestore(target))


def tree(workdir):
  return sorted((p, os.path.getmtime(p), os.path.getsize(p))
                for p in glob.glob(os.path.join(workdir, "**"), recursive=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  assert run_launch(workdir) == 0
  assert [r["step"] for r in metrics(workdir)] == [2, 4, 6]
  return workdir


def copy_of(reference, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference, workdir)
  return workdir


def test_kill_then_sigterm_then_rerun_gives_the_uninterrupted_run(
    reference, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  # 1. kill -9 as soon as the first checkpoint exists.
  proc = start_launch(workdir, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
  seen = []
  killed_at = kill_at_first_checkpoint(proc, workdir, 400)
  # What a kill during a save leaves: a temporary directory of a newer step.
  planted = os.path.join(ckpt_dir(workdir), "6.orbax-checkpoint-tmp-1")
  os.makedirs(os.path.join(planted, "default"))
  with open(os.path.join(planted, "default", "_METADATA"), "w") as f:
    f.write("{half")
  # 2. Rerun, and SIGTERM it (the preemption notice) once it has resumed.
  proc = start_launch(workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  for line in proc.stdout:
    seen.append(line)
    if "resuming from step" in line:
      break
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=400)
  assert proc.returncode == 0, err
  assert f"resuming from step {killed_at[-1]}" in seen[-1]
  assert not os.path.exists(planted)  # never picked, and cleaned up
  stopped = int(re.search(r"SIGTERM at step (\d+); checkpoint saved",
                          err).group(1))
  assert steps(workdir)[-1] == stopped < 6, (out, err)
  assert int(restore(workdir).step) == stopped
  # 3. Rerun the same command: it completes with the reference's numbers.
  assert run_launch(workdir) == 0
  assert f"resuming from step {stopped}" in capsys.readouterr().out
  assert metrics(workdir) == metrics(reference)
  assert steps(workdir) == [4, 6]  # max_to_keep=2 pruned the older ones


def test_a_run_on_the_device_path_killed_and_rerun_trains_as_the_host_path(
    reference, tmp_path):
  """augment_on=device (crop, resize, rotation and colour in the step): a
  run shows its first views (views.png), is killed -9 at its first
  checkpoint, and rerun ends with the host path's numbers, to float32 rounding (the same views to 2e-5; a resume
  that replayed other batches would be off by far more). That the device
  batch at step k does not depend on where the pipeline started is
  test_device_crops' test."""
  device = "--config.pretrain.augment_on=device"
  workdir = str(tmp_path / "run")
  proc = start_launch(workdir, device, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
  kill_at_first_checkpoint(proc, workdir, 400)
  assert os.path.getsize(os.path.join(workdir, "pretrain", "views.png")) > 0
  assert run_launch(workdir, device) == 0
  ours, host = metrics(workdir), metrics(reference)
  assert [m["step"] for m in ours] == [m["step"] for m in host]
  np.testing.assert_allclose([m["loss"] for m in ours],
                             [m["loss"] for m in host], rtol=1e-4)


def test_a_corrupted_newest_checkpoint_falls_back_to_the_previous(
    reference, tmp_path, caplog, capsys):
  workdir = copy_of(reference, tmp_path)
  for path in glob.glob(os.path.join(ckpt_dir(workdir), "6", "**", "d", "*"),
                        recursive=True):
    open(path, "w").close()  # truncated
  assert int(restore(workdir).step) == 4
  assert re.search(r"checkpoint .*/checkpoints/6 is corrupted", caplog.text)
  # The run resumes from 4, sets 6 aside, writes it again: the same numbers.
  # (With a collapse fraction of 0 the watch warns at every log step: its
  # wiring, without recompiling the step.)
  assert run_launch(workdir, "--config.pretrain.collapse_fraction=0.0",
                    "--config.allow_config_change=True") == 0
  out = capsys.readouterr().out
  assert "resuming from step 4" in out
  std = metrics(reference)[-1]["embedding_std"]
  assert ("WARNING: pretrain: COLLAPSE at step 6: 0.0% of the embedding "
          f"dimensions have std < 0.01 over the batch (mean std {std:.3g}"
          in out), out
  assert metrics(workdir) == metrics(reference)
  assert steps(workdir) == [4, 6]
  assert glob.glob(os.path.join(ckpt_dir(workdir), "6.corrupt-*"))


def test_all_checkpoints_corrupted_is_a_clear_error(reference, tmp_path,
                                                   capsys):
  workdir = copy_of(reference, tmp_path)
  for step in (4, 6):
    with open(os.path.join(ckpt_dir(workdir), str(step), "default",
                           "_METADATA"), "w") as f:
      f.write("{garbage")
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"no checkpoint in .* restores \(steps \[6, 4\]"):
    restore(workdir)
  assert run_launch(workdir) == 1
  assert "no checkpoint" in one_error_line(capsys.readouterr().err)


def test_nonfinite_stops_with_the_step_and_term(reference, tmp_path, capsys):
  workdir = copy_of(reference, tmp_path)
  # eps < -var: sqrt of a negative variance in the variance term, from step 7.
  code = run_launch(workdir, "--config.pretrain.max_steps=8",
                    "--config.loss.eps=-1000.0",
                    "--config.allow_config_change=True")
  assert code == 1
  line = one_error_line(capsys.readouterr().err)
  assert re.search(r"non-finite .*variance.* at step 7; stopped, the newest "
                   r"checkpoint \(6\) is intact", line), line
  assert steps(workdir) == [4, 6]
  assert int(restore(workdir).step) == 6


def test_nonfinite_steps_can_be_skipped_and_counted(reference, tmp_path):
  workdir = copy_of(reference, tmp_path)
  assert run_launch(workdir, "--config.pretrain.max_steps=8",
                    "--config.loss.eps=-1000.0",
                    "--config.pretrain.skip_nonfinite=True",
                    "--config.allow_config_change=True") == 0
  last = metrics(workdir)[-1]
  assert last["step"] == 8 and last["skipped_steps"] == 2
  assert steps(workdir) == [6, 8]
  at_8 = restore(workdir)  # nothing was applied in the skipped steps
  assert int(at_8.step) == 8
  # ...but the schedule's count moved on with the step: the lr step 9
  # applies is the lr it logs (tests/test_optimizers.py checks the update).
  assert int(optax.tree.get(at_8.opt_state, "count")) == 8
  jax.tree.map(np.testing.assert_array_equal, at_8.params,
               restore(workdir, 6).params)


def test_collapse_warning_decision():
  warn = pretraining.collapse_warning
  healthy = {"collapsed_fraction": 0.5, "embedding_std": 0.3}
  collapsed = {"collapsed_fraction": 0.95, "embedding_std": 0.002,
               "variance": 0.99}
  assert warn(10, healthy, 0.01, 0.9) is None
  message = warn(10, collapsed, 0.01, 0.9)
  assert "step 10" in message and "95.0%" in message and "0.002" in message
  stats = pretrain_step.embedding_stats(
      np.stack([np.arange(8.0), np.zeros(8), np.full(8, 3.0),
                np.arange(8.0) * 1e-4], axis=1), 0.01)
  assert float(stats["collapsed_fraction"]) == 0.75


def test_unwritable_workdir_is_refused(tmp_path, capsys):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  assert run_launch(str(blocker / "workdir")) == 1
  assert "is not writable" in one_error_line(capsys.readouterr().err)
  assert blocker.read_text() == "not a directory"


def test_another_config_is_refused_and_nothing_written(reference, capsys):
  before = tree(reference)
  assert run_launch(reference, "--config.pretrain.batch_size=32") == 1
  line = one_error_line(capsys.readouterr().err)
  assert "holds a run of a different config (pretrain.batch_size: 64 -> 32)" \
      in line and "allow_config_change" in line
  assert tree(reference) == before


def test_a_run_from_an_older_version_resumes(tmp_path):
  """config.json of a version without a newer key: at its default the key
  is no change; set otherwise, it is one."""
  config = load_config("digits")
  workdir = str(tmp_path)
  runner.prepare_workdir(config, workdir)
  path = tmp_path / "config.json"
  written = json.loads(path.read_text())
  del written["linear_probe"]["encoder_workdir"]
  del written["finetune"]["label_fraction"]
  # Added later still: the optimizer choice (a ResNet's is LARS, as before)
  # and augment_on, whose older runs augmented on the host, not "auto".
  del written["pretrain"]["optimizer"]
  del written["pretrain"]["augment_on"]
  path.write_text(json.dumps(written))
  # What reads a workdir (load_encoder, export, init_from) gets a whole
  # config: the optimizer that restores the checkpoint's structure is LARS.
  read = pretrained.read_config(workdir)
  assert read.pretrain.augment_on == "host"
  optimizer, _ = pretrain_step.make_optimizer(read, steps_per_epoch=1)
  params = {"encoder/linear": {"w": jnp.ones((2, 2))}}
  assert jax.tree.structure(optimizer.init(params)) == jax.tree.structure(
      pretrain_step.make_optimizer(config, steps_per_epoch=1)[0].init(params))
  config = load_config("digits")
  runner.choose_augment_on(config, workdir)
  assert config.pretrain.augment_on == "host"
  runner.prepare_workdir(config, workdir)
  path.write_text(json.dumps(written))
  config.finetune.label_fraction = 0.5
  with pytest.raises(errors.ConfigError,
                     match=r"finetune.label_fraction: 1.0 -> 0.5"):
    runner.prepare_workdir(config, workdir)


def test_a_vit_run_written_with_a_resnet_width_resumes_without_it(tmp_path):
  """A ViT workdir written with --config.model.width (ignored then, refused
  now) resumes at the config file's width: a setting the encoder ignores is
  no change. For a ResNet it still is one."""
  config = load_config("digits")
  config.model.encoder = "vit_tiny"
  config.model.width = 4
  runner.prepare_workdir(config, str(tmp_path / "vit"))
  config.model.width = 12
  runner.prepare_workdir(config, str(tmp_path / "vit"))
  resnet = load_config("digits")
  resnet.model.width = 4
  runner.prepare_workdir(resnet, str(tmp_path / "resnet"))
  resnet.model.width = 12
  with pytest.raises(errors.ConfigError, match=r"model.width: 4 -> 12"):
    runner.prepare_workdir(resnet, str(tmp_path / "resnet"))


def test_files_deleted_while_a_streamed_folder_run_trains(tmp_path):
  """As a user did: files deleted under a running pretraining on a streamed
  folder. The run goes on to its last step, says so in one warning per
  doubling of the count, and lists the files beside the index."""
  root, workdir = tmp_path / "photos", tmp_path / "run"
  paths = folder_fake.write_images(str(root), 32, np.random.default_rng(0),
                                   sizes=((40, 56), (56, 40)))
  flags_ = [
      "--config=configs/folder.py", f"--config.dataset.folder={root}",
      "--config.dataset.in_memory_max_gb=0", "--config.model.width=4",
      "--config.model.expander_dims=(32,32,32)",
      "--config.dataset.image_size=8", "--config.eval_batch_size=32",
      "--config.pretrain.batch_size=8", "--config.pretrain.epochs=6",
      "--config.pretrain.warmup_epochs=1", "--config.pretrain.base_lr=0.2",
      "--config.pretrain.log_every_steps=2",
      "--config.pretrain.checkpoint_every_steps=2",
      "--config.pretrain.rankme_examples=16",
      "--config.pretrain.rankme_every_steps=16", f"--workdir={workdir}"]
  proc = subprocess.Popen([sys.executable, "launch.py", *flags_], cwd=ROOT,
                          text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 400
  while not os.path.isdir(os.path.join(ckpt_dir(str(workdir)), "2")):
    assert proc.poll() is None and time.monotonic() < deadline
    time.sleep(0.02)
  gone = paths[3::4]  # 8 of 32, read again in the epochs still to come
  for path in gone:
    os.remove(path)
  out, _ = proc.communicate(timeout=400)
  assert proc.returncode == 0, out[-3000:]
  assert max(m["step"] for m in metrics(str(workdir))) == 24
  warnings = [l for l in out.splitlines() if "no longer read" in l]
  assert warnings and "Traceback" not in out
  listed = glob.glob(os.path.join(root, ".vicreg_haiku_index",
                                  "*.unreadable.txt"))
  assert listed and listed[0] in warnings[-1]
  with open(listed[0]) as f:
    assert {line.split("\t")[0] for line in f} <= set(gone)


def test_augment_on_auto_picks_by_backend():
  resolve = device_augmentations.resolve
  assert [resolve("auto", b) for b in ("cpu", "gpu", "tpu")] == [
      "host", "device", "device"]
  assert resolve("host", "tpu") == "host" and resolve("device", "cpu") == (
      "device")
  assert resolve("auto") == "host"  # this suite runs on JAX's CPU backend


def test_augment_on_auto_is_chosen_once_and_kept_on_resume(tmp_path,
                                                           capsys):
  """A new workdir records the backend's pick; one written before with
  either value resumes with it under "auto" (no config change); an explicit
  other value still is one."""
  config = load_config("digits")
  assert config.pretrain.augment_on == "auto"
  new = str(tmp_path / "new")
  runner.choose_augment_on(config, new)
  runner.prepare_workdir(config, new)
  assert config.pretrain.augment_on == "host"
  assert "pretrain.augment_on=auto: host (JAX backend: cpu)" in (
      capsys.readouterr().out)
  with open(os.path.join(new, "config.json")) as f:
    assert json.load(f)["pretrain"]["augment_on"] == "host"
  for recorded in ("host", "device"):
    workdir = str(tmp_path / recorded)
    old = load_config("digits")
    old.pretrain.augment_on = recorded
    runner.prepare_workdir(old, workdir)
    config = load_config("digits")
    runner.choose_augment_on(config, workdir)
    assert config.pretrain.augment_on == recorded
    assert f"auto: {recorded} (as the run in {workdir})" in (
        capsys.readouterr().out)
    runner.prepare_workdir(config, workdir)
  config = load_config("digits")
  config.pretrain.augment_on = "host"
  runner.choose_augment_on(config, str(tmp_path / "device"))
  with pytest.raises(errors.ConfigError,
                     match=r"pretrain.augment_on: 'device' -> 'host'"):
    runner.prepare_workdir(config, str(tmp_path / "device"))


def test_a_probe_without_encoder_is_refused_and_nothing_written(tmp_path,
                                                                capsys):
  workdir = tmp_path / "new"
  assert run_launch(str(workdir), "--config.mode=linear_probe") == 1
  assert "no pretrained encoder in" in one_error_line(capsys.readouterr().err)
  assert not workdir.exists()
