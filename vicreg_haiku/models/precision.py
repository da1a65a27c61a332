"""Mixed precision with jmp: params and loss in float32, BatchNorm and
LayerNorm in float32."""

import haiku as hk
import jax.numpy as jnp
import jmp

from vicreg_haiku.models import heads
from vicreg_haiku.models import layers
from vicreg_haiku.models import resnet
from vicreg_haiku.models import vit

PRECISIONS = ("float32", "bfloat16")
# The pretraining step (ResNet-18, ImageNet stem, 2048-wide expander, batch
# 64, 96 px) on 2 CPU cores, images/s, back to back on 2026-12-02
# (`python benchmarks/train_step.py --precision P`, BENCHMARKS.md): XLA:CPU
# upcasts bfloat16 convolutions, so bfloat16 is slower there.
CPU_IMAGES_PER_SECOND = {"float32": 37.6, "bfloat16": 17.1}


def slow_precision_warning(name: str, platform: str) -> str | None:
  """The warning for a compute dtype that is slower than float32 on this
  backend (bfloat16 on a CPU), else None. Only a warning: such a run works
  and gives bfloat16's numbers, just slowly."""
  if name != "bfloat16" or platform != "cpu":
    return None
  f32, bf16 = (CPU_IMAGES_PER_SECOND[k] for k in ("float32", "bfloat16"))
  return (f"precision=bfloat16 on a CPU: XLA:CPU upcasts the convolutions, "
          f"so the step runs {f32 / bf16:.1f}x slower than in float32 "
          f"({bf16:g} against {f32:g} images/s for the ResNet-18 step, batch "
          "64, 96 px, 2 cores); --config.precision=float32 is faster here, "
          "bfloat16 pays on TPUs and GPUs")


def set_compute_dtype(name: str) -> jmp.Policy:
  """Sets the Haiku policies of the model's modules; returns the model policy.

  Convolutions, dense layers and attention compute in `name`; their params
  stay float32. BatchNorm and LayerNorm compute in float32 and hand the
  compute dtype on, so statistics never accumulate in bfloat16.
  """
  if name not in PRECISIONS:
    raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
  compute = jnp.dtype(name)
  model_policy = jmp.Policy(param_dtype=jnp.float32, compute_dtype=compute,
                            output_dtype=jnp.float32)
  norm_policy = jmp.Policy(param_dtype=jnp.float32, compute_dtype=jnp.float32,
                           output_dtype=compute)
  for module in (resnet.ResNet18, resnet.ResNet50, vit.VisionTransformer,
                 heads.Expander):
    hk.mixed_precision.set_policy(module, model_policy)
  for module in (layers.BatchNorm, vit.LayerNorm):
    hk.mixed_precision.set_policy(module, norm_policy)
  return model_policy
