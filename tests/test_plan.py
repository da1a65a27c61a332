"""python -m vicreg_haiku.plan: the real TPU compiler (libtpu, the tpu extra
CI installs) compiles the pretraining step for a 4-chip v5e; its figures
against an analytic count of the network, the slices against Cloud's
layouts, the cycle sum's rules on hand-written HLO."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from test_config import load_config
from vicreg_haiku.training import compiled_costs
from vicreg_haiku.training import tpu_slices
from vicreg_haiku.utils import compile_target

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
GIB = 1 << 30


def _plan(*flags, timeout=600):
  return subprocess.run(
      [sys.executable, "-m", "vicreg_haiku.plan", *flags], cwd=ROOT,
      capture_output=True, text=True, timeout=timeout)


def _conv_macs(size, k, c_in, c_out, stride):
  """(multiply-adds per image, output side) of a k x k conv padded by
  k // 2, counting only the taps that fall inside the image (as XLA counts:
  a padding zero is no multiply-add)."""
  pad = k // 2
  out = (size + 2 * pad - k) // stride + 1
  taps = sum(1 for o in range(out) for t in range(k)
             if 0 <= o * stride - pad + t < size)
  return taps * taps * c_in * c_out, out


def _resnet18_cifar_macs(size, width):
  """(multiply-adds per image of the convs, the stem conv's share), counted
  from torchvision's BasicBlock layout."""
  stem, size = _conv_macs(size, 3, 3, width, 1)
  total, c_in = stem, width
  for stage in range(4):
    channels = width * 2**stage
    for block in range(2):
      stride = 2 if stage > 0 and block == 0 else 1
      if stride != 1 or c_in != channels:
        total += _conv_macs(size, 1, c_in, channels, stride)[0]
      macs, out = _conv_macs(size, 3, c_in, channels, stride)
      total += macs + _conv_macs(out, 3, channels, channels, 1)[0]
      size, c_in = out, channels
  return total, stem


def _step_flops(batch, size, width, dims):
  """FLOPs of a VICReg step, global: per view the encoder and expander
  forward (2 FLOPs a multiply-add), their backward twice that but for the
  images' gradient (the stem's input gradient is never needed), and the
  covariance z^T z with its gradient."""
  convs, stem = _resnet18_cifar_macs(size, width)
  dense = sum(a * b for a, b in zip((8 * width,) + dims[:-1], dims))
  forward = 2 * batch * (convs + dense)
  backward = 2 * forward - 2 * batch * stem
  covariance = 2 * (2 * batch * dims[-1]**2)
  return 2 * (forward + backward + covariance)


def test_the_step_compiles_for_a_v5e_slice_with_its_analytic_flops(tmp_path):
  out = tmp_path / "plan.json"
  result = _plan("--config=configs/digits.py", "--topology=v5e:2x2",
                 "--programs=pretrain", "--config.pretrain.augment_on=host",
                 "--config.precision=bfloat16", f"--json={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  plan = json.loads(out.read_text())
  assert (plan["chips"], plan["hosts"]) == (4, 1)
  step = plan["programs"]["pretrain step"]
  assert step["compiled"] and step["per_chip"] == 32
  # digits.py: ResNet-18 width 12, CIFAR stem, 16 px, expander 1024 x 3,
  # batch 128 over 4 chips. XLA also counts the elementwise work
  # (BatchNorm, ReLU, the loss, the optimizer) that the analytic count
  # leaves out: 13% at this width (it was 2026-12-07); a batch not split
  # over the chips would be 4x off, a view run twice or a lost backward
  # pass 1.5-2x.
  expected = _step_flops(128, 16, 12, (1024, 1024, 1024)) / 4
  assert 1.0 <= step["flops"] / expected < 1.25, (step["flops"], expected)
  assert 0 < step["hbm_bytes"] < step["hbm_capacity_bytes"] == 16 * GIB
  assert step["estimated_step_seconds"] > 0
  np.testing.assert_allclose(
      step["images_per_second_per_chip"],
      32 / step["estimated_step_seconds"], rtol=1e-6)
  np.testing.assert_allclose(
      step["mfu"], step["flops"] / step["estimated_step_seconds"] / 197e12,
      rtol=1e-6)
  # digits.py: 1,257 training images, 9 steps of 128 an epoch.
  epochs = load_config("digits").pretrain.epochs
  assert plan["pretrain_run_seconds"] == pytest.approx(
      epochs * 9 * step["estimated_step_seconds"])
  assert f"{epochs} epochs" in result.stdout
  assert "not measurements" in result.stdout
  assert "Traceback" not in result.stderr


def test_a_program_that_does_not_fit_names_the_batch_that_does(tmp_path):
  """512 px images, 512 a chip through the encoder's forward: the compiler
  runs out of the v5e's 16 GiB; the row says so in one line, the halving
  finds 256 a chip, and the exit code is 2."""
  out = tmp_path / "plan.json"
  result = _plan("--config=configs/digits.py", "--topology=v5e-4",
                 "--programs=features", "--config.dataset.image_size=512",
                 "--config.eval_batch_size=2048", f"--json={out}")
  assert result.returncode == 2, result.stderr[-3000:]
  row = json.loads(out.read_text())["programs"]["features"]
  assert not row["compiled"] and "RESOURCE_EXHAUSTED" in row["error"]
  assert "\n" not in row["error"]
  assert row["per_chip"] == 512 and row["fits_per_chip"] == 256
  assert "features: fits at 256 per chip" in result.stdout


@pytest.mark.parametrize("flags, message", [
    (("--topology=v3-8",), "not a TPU slice this plan knows"),
    (("--topology=v5e-8", "--programs=warp"), "compiles no 'warp'"),
])
def test_a_usage_mistake_is_one_line_and_exit_1(flags, message):
  result = _plan("--config=configs/digits.py", *flags, timeout=120)
  assert result.returncode == 1, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr
  assert result.stdout == ""


@pytest.mark.parametrize("name, topology, chips, hosts", [
    ("v5e-8", "v5e:2x4", 8, 1),        # one host of 8 chips
    ("v5litepod-8", "v5e:2x4", 8, 1),
    ("v5e-4", "v5e:2x2", 4, 1),
    ("v5e-32", "v5e:4x8", 32, 8),      # hosts of 4 chips
    ("v5e-256", "v5e:16x16", 256, 64),
    ("v6e-8", "v6e:2x4", 8, 1),
    ("v4-8", "v4:2x2x1", 4, 1),        # Cloud counts v4's TensorCores
    ("v4-32", "v4:2x2x4", 16, 4),
    ("v4-64", "v4:2x4x4", 32, 8),
    ("v5p-8", "v5:2x2x1", 4, 1),
    ("v5e:2x4", "v5e:2x4", 8, 1),
])
def test_slices_are_laid_out_as_cloud_lays_them_out(name, topology, chips,
                                                    hosts):
  tpu_slice = tpu_slices.parse(name)
  assert (tpu_slice.jax_topology, tpu_slice.chips, tpu_slice.hosts) == (
      topology, chips, hosts)


def test_megacore_chips_are_one_device_each():
  mesh = tpu_slices.mesh(tpu_slices.parse("v4-8"))
  assert mesh.devices.size == 4
  assert {d.device_kind for d in mesh.devices.flat} == {"TPU v4"}


_HLO = """HloModule m

%fused (p: f32[8]) -> f32[8] {
  %p = f32[8]{0} parameter(0)
  ROOT %e = f32[8]{0} exponential(%p), backend_config={"estimated_cycles":"1000"}
}

%body (t: (s32[], f32[8])) -> (s32[], f32[8]) {
  %t = (s32[], f32[8]{0}) parameter(0)
  %f = f32[8]{0} fusion(%x), kind=kLoop, calls=%fused, backend_config={"estimated_cycles":"7"}
  ROOT %r = (s32[], f32[8]{0}) tuple(%i, %f)
}

%cond (t: (s32[], f32[8])) -> pred[] {
  %t = (s32[], f32[8]{0}) parameter(0)
  ROOT %lt = pred[] compare(%a, %b), direction=LT, backend_config={"estimated_cycles":"1"}
}

%cheap (p: f32[8]) -> f32[8] {
  ROOT %c = f32[8]{0} copy(%p), backend_config={"estimated_cycles":"3"}
}

%dear (p: f32[8]) -> f32[8] {
  ROOT %d = f32[8]{0} fusion(%p), kind=kLoop, calls=%fused, backend_config={"estimated_cycles":"50"}
}

ENTRY %main (a: f32[8]) -> f32[8] {
  %a = f32[8]{0} parameter(0)
  %w = (s32[], f32[8]{0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"10"}}
  %k = f32[8]{0} conditional(%pred, %a, %a), branch_computations={%cheap, %dear}
  ROOT %g = f32[8]{0} fusion(%a), kind=kLoop, calls=%fused, backend_config={"estimated_cycles":"100"}
}
"""


def test_the_cycle_sum_counts_what_runs():
  costs = compiled_costs.estimated_cycles(_HLO)
  # The loop 10 x (7 + 1), the dearer branch 50, the entry's fusion 100;
  # never the fused computation's own 1000.
  assert costs.cycles == 10 * (7 + 1) + 50 + 100
  assert costs.unknown_trip_counts == 0
  assert [c for c, _ in costs.instructions] == [100, 70, 50, 10]
  # A loop whose trip count only the run knows: counted once, and said.
  unknown = compiled_costs.estimated_cycles(_HLO.replace(
      ', backend_config={"known_trip_count":{"n":"10"}}', ""))
  assert unknown.cycles == (7 + 1) + 50 + 100
  assert unknown.unknown_trip_counts == 1


def test_a_step_traced_for_a_tpu_has_no_cpu_workarounds():
  """XLA:CPU's workarounds (layers._in_memory: a conditional in the backward
  pass of every BatchNorm and convolution call) stay out of a program traced
  for a TPU from this CPU process, and only they."""
  from vicreg_haiku.models import transforms  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.training import parallel  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.training import pretrain_step  # pylint: disable=g-import-not-at-top
  from vicreg_haiku.utils import defaults  # pylint: disable=g-import-not-at-top
  config = defaults.base_config()
  config.model.width = 4
  config.model.expander_dims = (16, 16)
  config.dataset.image_size = 16
  config.pretrain.augment_on = "host"
  model = transforms.pretrain_model(config)
  optimizer, schedule = pretrain_step.make_optimizer(config, 1)
  state = jax.eval_shape(
      lambda: pretrain_step.init_state(config, model, optimizer))
  view = jax.ShapeDtypeStruct((8, 16, 16, 3), np.float32)

  def conditionals():
    # A new step each time: jit would reuse the first trace.
    step = jax.jit(pretrain_step.make_step(config, model, optimizer,
                                           schedule, parallel.make_mesh()))
    text = step.lower(state, {"view_a": view, "view_b": view}).as_text()
    return text.count("stablehlo.case")

  with compile_target.compiling_for("tpu"):
    on_tpu = conditionals()
  # Each view: ResNet-18's 20 convolutions and 20 BatchNorms (stem, two per
  # block, three shortcuts) and the expander's one BatchNorm.
  assert conditionals() - on_tpu == 2 * (20 + 20 + 1)


def test_a_cpu_run_with_libtpu_installed_prints_nothing_new():
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  result = subprocess.run(
      [sys.executable, "-c", "from vicreg_haiku import launch_env; "
       "launch_env.prepare(''); import jax; print(jax.devices()[0].platform)"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "cpu"
  assert result.stderr == ""
