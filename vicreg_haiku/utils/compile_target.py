"""The platform that jit compiles for: JAX's default backend, or the one a
plan names while it compiles for TPU slices from another machine.

Code that traces differently by platform (XLA:CPU's workarounds in
models/layers.py, augment_on="auto") asks here rather than JAX, so a program
compiled for a TPU from a CPU process is the program a TPU VM would run.
"""

import contextlib
from typing import Iterator

import jax

_target: str | None = None


def platform() -> str:
  """"cpu", "gpu", "tpu": the platform being compiled for."""
  return _target or jax.default_backend()


@contextlib.contextmanager
def compiling_for(name: str) -> Iterator[None]:
  """Traces inside the block are for `name` ("tpu"), whatever runs them."""
  global _target
  previous, _target = _target, name
  try:
    yield
  finally:
    _target = previous
