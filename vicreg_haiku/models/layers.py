"""The layers of the encoders and the expander, laid out as PyTorch's.

Initialisation and BatchNorm follow PyTorch: kaiming-normal fan-out convs,
torch's default Linear init, BN momentum 0.1 (decay 0.9), eps 1e-5, the running
variance updated with the unbiased batch variance. On XLA:CPU the
convolutions' and BatchNorm's gradients take faster paths of the same maths
(BENCHMARKS.md); elsewhere they are plain autodiff.
"""

import functools
import math

import haiku as hk
import jax
import jax.numpy as jnp

from vicreg_haiku.utils import compile_target

_CONV_INIT = hk.initializers.VarianceScaling(2.0, "fan_out", "normal")


def _on_xla_cpu() -> bool:
  """Whether jit compiles for XLA:CPU, whose code generation the helpers
  below work around (accelerators take the plain path; a plan for a TPU
  slice traces the TPU's program from a CPU process: compile_target)."""
  return compile_target.platform() == "cpu"


def _in_memory(arrays: tuple[jax.Array, ...], replicated: jax.Array
               ) -> tuple[jax.Array, ...]:
  """`arrays`, each computed into a buffer of its own on XLA:CPU.

  XLA:CPU fuses the elementwise ops that produce an array into each of its
  consumers, recomputing them in every one. Into the layout transposes of a
  weight-gradient convolution this is costly: such a fused transpose reads
  each of its inputs at a stride of a whole image per element, 5-30x slower
  than transposing a buffer. XLA:CPU drops `optimization_barrier` before
  fusing, but the operands of a conditional are computed into memory first.
  The predicate is always true, but XLA cannot tell: it reads an element of
  `replicated`, an array every device holds whole (a parameter), so no device
  waits for another.
  """
  if not _on_xla_cpu():
    return arrays
  first = replicated.reshape(-1)[0].astype(jnp.float32)
  bits = jax.lax.bitcast_convert_type(first, jnp.int32)
  return jax.lax.cond((bits | 1) != 0, lambda a: a,
                      lambda a: jax.tree.map(jnp.zeros_like, a),  # never
                      arrays)


@jax.custom_vjp
def cotangent_in_memory(x: jax.Array, replicated: jax.Array) -> jax.Array:
  """`x` as is; on XLA:CPU its cotangent is computed into a buffer of its
  own (`_in_memory`; `replicated` as there, it gets a zero gradient).

  For a residual stream: its gradient is a chain of elementwise adds, one
  term per layer behind it, which XLA:CPU otherwise fuses into each consumer
  (the transposes before the weight-gradient dots), recomputing the whole
  chain in every one: 39% of a depth-12 ViT's step (BENCHMARKS.md).
  """
  del replicated
  return x


def _cotangent_in_memory_fwd(x, replicated):
  return x, replicated


def _cotangent_in_memory_bwd(replicated, dx):
  dx, = _in_memory((dx,), replicated)
  return dx, jnp.zeros_like(replicated)


cotangent_in_memory.defvjp(_cotangent_in_memory_fwd, _cotangent_in_memory_bwd)


def _channel_sums(x: jax.Array) -> jax.Array:
  """Sums over every axis but the last (the channels) of float32 `x`.

  XLA:CPU turns a reduction over the ~10^5 positions of an activation into
  strided reduce-windows (~2 GB/s); the same sum as a product with a vector
  of ones is 2-15x faster (BENCHMARKS.md).
  """
  if not _on_xla_cpu():
    return jnp.sum(x, axis=tuple(range(x.ndim - 1)))
  rows = x.reshape(-1, x.shape[-1])
  return jnp.dot(jnp.ones(rows.shape[0], x.dtype), rows,
                 precision=jax.lax.Precision.HIGHEST)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _batch_norm_train(x: jax.Array, scale: jax.Array, offset: jax.Array,
                      eps: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode BN of float32 `x` -> (y, batch mean, biased batch var)."""
  return _batch_norm_train_fwd(x, scale, offset, eps)[0]


def _batch_norm_train_fwd(x, scale, offset, eps):
  n = x.size // x.shape[-1]
  mean = _channel_sums(x) / n
  var = _channel_sums(jnp.square(x - mean)) / n
  rstd = jax.lax.rsqrt(var + eps)
  y = (x - mean) * (rstd * scale) + offset
  return (y, mean, var), (x, mean, rstd, scale)


def _batch_norm_train_bwd(eps, residuals, cotangents):
  """The analytic BN gradient: one reduction pass and one elementwise pass.

  Autodiff of the forward differentiates the two reductions separately and
  walks the activations several more times; here every per-channel term is
  folded into dx = a * dy + b * (x - mean) + c. The cotangents of the mean
  and variance outputs (zero in training, where they only feed the running
  statistics) are included, so this is the exact VJP of the forward.
  """
  del eps
  x, mean, rstd, scale = residuals
  dy, dmean, dvar = cotangents
  dy, = _in_memory((dy,), scale)  # else XLA:CPU recomputes it in both sums
  n = x.size // x.shape[-1]
  centred = x - mean
  dy_sum = _channel_sums(dy)
  dy_xhat_sum = _channel_sums(dy * centred) * rstd
  a = rstd * scale
  b = (2 * dvar - a * rstd * dy_xhat_sum) / n
  c = (dmean - a * dy_sum) / n
  dx = a * dy + b * centred + c
  return dx, dy_xhat_sum, dy_sum


_batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd)


class BatchNorm(hk.Module):
  """BatchNorm with PyTorch's semantics, statistics always in float32.

  The batch statistics are reductions over every axis but the last, so under
  `jax.jit` with a data-sharded batch they are the global batch's: this is
  SyncBatchNorm without any code for it.
  """

  def __init__(self, zero_init: bool = False, decay: float = 0.9,
               eps: float = 1e-5, name: str | None = None):
    super().__init__(name=name)
    self._zero_init = zero_init
    self._decay = decay
    self._eps = eps

  def __call__(self, x: jax.Array, is_training: bool) -> jax.Array:
    channels = x.shape[-1]
    scale = hk.get_parameter(
        "scale", [channels], jnp.float32,
        init=jnp.zeros if self._zero_init else jnp.ones)
    offset = hk.get_parameter("offset", [channels], jnp.float32, init=jnp.zeros)
    running_mean = hk.get_state("mean", [channels], jnp.float32, init=jnp.zeros)
    running_var = hk.get_state("var", [channels], jnp.float32, init=jnp.ones)
    x32 = x.astype(jnp.float32)
    scale32 = scale.astype(jnp.float32)
    offset32 = offset.astype(jnp.float32)
    if not is_training:
      inv = jax.lax.rsqrt(running_var + self._eps) * scale32
      return ((x32 - running_mean) * inv + offset32).astype(x.dtype)
    y, mean, var = _batch_norm_train(x32, scale32, offset32, self._eps)
    count = x.size // channels
    unbiased_var = var * count / max(count - 1, 1)
    hk.set_state("mean", self._decay * running_mean + (1 - self._decay) * mean)
    hk.set_state("var",
                 self._decay * running_var + (1 - self._decay) * unbiased_var)
    return y.astype(x.dtype)


def _conv2d_autodiff(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
  """NHWC x HWIO, torchvision's symmetric padding of kernel // 2."""
  pad = w.shape[0] // 2
  return jax.lax.conv_general_dilated(
      x, w, (stride, stride), ((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


_conv2d = jax.custom_vjp(_conv2d_autodiff, nondiff_argnums=(2,))


def _conv2d_fwd(x, w, stride):
  return _conv2d(x, w, stride), (x, w)


def _conv2d_bwd(stride, residuals, dy):
  """Autodiff's two gradient convolutions, the weight gradient's inputs read
  from memory (see `_in_memory`)."""
  x, w = residuals
  _, input_vjp = jax.vjp(lambda x: _conv2d_autodiff(x, w, stride), x)
  x, dy = _in_memory((x, dy), w)
  _, weight_vjp = jax.vjp(lambda w: _conv2d_autodiff(x, w, stride), w)
  return input_vjp(dy)[0], weight_vjp(dy)[0]


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


class Conv(hk.Module):
  """A bias-free convolution; parameter "w" laid out as hk.Conv2D's (HWIO)."""

  def __init__(self, channels: int, kernel: int, stride: int, name: str):
    super().__init__(name=name)
    self._channels = channels
    self._kernel = kernel
    self._stride = stride

  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (self._kernel, self._kernel, x.shape[-1], self._channels)
    w = hk.get_parameter("w", shape, x.dtype, init=_CONV_INIT)
    return _conv2d(x, w, self._stride)


_POOL_PADDING = ((0, 0), (1, 1), (1, 1), (0, 0))


def _max_pool_autodiff(x: jax.Array) -> jax.Array:
  # torch pads the max-pool with -inf, one pixel on every side.
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                               (1, 2, 2, 1), _POOL_PADDING)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """torchvision's stem max-pool. Its gradient is XLA's select-and-scatter
  on accelerators, whose fused kernels are fast there; on XLA:CPU the same
  routing as elementwise passes (_max_pool_bwd)."""
  if _on_xla_cpu():
    return _max_pool_for_xla_cpu(x)
  return _max_pool_autodiff(x)


@jax.custom_vjp
def _max_pool_for_xla_cpu(x: jax.Array) -> jax.Array:
  return _max_pool_autodiff(x)


def _max_pool_fwd(x):
  return _max_pool_autodiff(x), x


def _max_pool_bwd(x, dy):
  """Routes dy to the first maximum of each window in row-major order.

  That is the tie rule of both torch and XLA's select-and-scatter (ties are
  common: the input is a ReLU's output), so accelerators, which take XLA's,
  route alike. XLA:CPU expands select-and-scatter into index-tracking
  reduce-windows over int32 iotas of the padded input and a scatter, several
  times the activation's memory; nine shifted compares and nine strided pads
  fuse into a few elementwise loops instead. The window
  maxima are recomputed here rather than saved: XLA may rematerialise `x`
  with different rounding (e.g. a fused multiply-add) than the forward saw,
  and a maximum compared against a slightly different `x` would match nothing.
  """
  padded = jnp.pad(x, _POOL_PADDING, constant_values=-jnp.inf)
  height, width = padded.shape[1:3]
  out_h, out_w = dy.shape[1:3]
  windows = [padded[:, i:i + 2 * out_h - 1:2, j:j + 2 * out_w - 1:2]
             for i in range(3) for j in range(3)]
  maximum = functools.reduce(jnp.maximum, windows)
  taken = jnp.zeros(dy.shape, bool)
  dx = jnp.zeros(padded.shape, dy.dtype)
  for index, window in enumerate(windows):
    i, j = divmod(index, 3)
    first = (window == maximum) & ~taken
    taken = taken | first
    # Interior padding 1 puts output pixel (r, c) back at (2r + i, 2c + j).
    dx = dx + jax.lax.pad(
        jnp.where(first, dy, 0), jnp.zeros((), dy.dtype),
        ((0, 0, 0), (i, height - i - 2 * out_h + 1, 1),
         (j, width - j - 2 * out_w + 1, 1), (0, 0, 0)))
  return (dx[:, 1:-1, 1:-1],)


_max_pool_for_xla_cpu.defvjp(_max_pool_fwd, _max_pool_bwd)


class TorchLinear(hk.Module):
  """A dense layer with torch.nn.Linear's default init: U(+-1/sqrt(fan_in))."""

  def __init__(self, output_size: int, with_bias: bool = True,
               name: str | None = None):
    super().__init__(name=name)
    self._output_size = output_size
    self._with_bias = with_bias

  def __call__(self, x: jax.Array) -> jax.Array:
    bound = 1.0 / math.sqrt(x.shape[-1])
    uniform = hk.initializers.RandomUniform(-bound, bound)
    w = hk.get_parameter("w", [x.shape[-1], self._output_size], x.dtype,
                         init=uniform)
    y = x @ w
    if self._with_bias:
      y = y + hk.get_parameter("b", [self._output_size], x.dtype, init=uniform)
    return y
