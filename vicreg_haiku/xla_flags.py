"""XLA flags the project runs with unless the user chose otherwise.

Call set_defaults() before JAX starts its backend (before the first JAX
computation; importing this module does not import JAX).
"""

import os

# jax 0.10's XLA:CPU routes dots, convolutions and reductions through
# YNNPACK by default; limited to dots, the ResNet-18 pretraining step runs
# about twice as fast on 2 cores (BENCHMARKS.md); the tests, which compare
# against NumPy and torch-semantics references, run with it. The flag is
# ignored by the TPU and GPU backends.
_YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_FUSION_DEFAULT = "dot"


def set_defaults() -> None:
  """Adds the project's defaults to XLA_FLAGS; a flag already there wins."""
  flags = os.environ.get("XLA_FLAGS", "")
  if _YNN_FUSION_FLAG not in flags:
    os.environ["XLA_FLAGS"] = " ".join(
        filter(None, [flags, f"{_YNN_FUSION_FLAG}={_YNN_FUSION_DEFAULT}"]))
