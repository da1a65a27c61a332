"""The step benchmark and the training loop without TensorFlow.

Accelerator images often lack TensorFlow (it cannot be carried there as a
small wheel), so benchmarks/train_step.py, which runs the step and the loop
around it (loop -> writers, checkpointing), must not import it. This test
suite imports TF itself, so the check runs in a fresh process.
"""

import os
import subprocess
import sys

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)

_CHECK = """
import importlib.util, sys, tempfile
spec = importlib.util.spec_from_file_location(
    "train_step", "benchmarks/train_step.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
from vicreg_haiku.training import loop  # what --loop_steps imports
from vicreg_haiku.utils import writers

phase_dir = tempfile.mkdtemp()
writer = writers.MetricsWriter(phase_dir, tensorboard=False)
writer.write_scalars(3, {"loss": 0.5})
writer.drop_after(2)
writer.write_scalars(4, {"loss": 0.25})
writer.close()
print(writers.read_metrics(phase_dir))
print("tensorflow" in sys.modules)
"""


def test_step_benchmark_and_loop_import_no_tensorflow():
  env = dict(os.environ, PYTHONPATH=_ROOT)
  done = subprocess.run([sys.executable, "-c", _CHECK], cwd=_ROOT, env=env,
                        capture_output=True, text=True, check=True)
  records, imported = done.stdout.strip().splitlines()[-2:]
  assert records == "[{'step': 4, 'loss': 0.25}]"
  assert imported == "False", done.stderr
