"""GPU numerics for the Triton interpreter: what an sm_90 card computes and the interpreter does not.

``emulate_gpu_numerics(monkeypatch)`` patches the interpreter's builder (``InterpreterBuilder``) and the launch
helpers for one test (the ``gpu_numerics`` fixture of tests/conftest.py applies it):

- ``tl.dot(..., input_precision="tf32")`` on float32 operands: the tensor cores read a raw fp32 register as TF32,
  i.e. the low 13 mantissa bits are dropped (truncation toward zero; the PTX has no cvt before the mma);
- ``"tf32x3"``: a = hi + lo with hi = rna_tf32(a), lo = rna_tf32(a − hi) (``cvt.rna.tf32.f32`` in the PTX) and
  hi·hi' + hi·lo' + lo·hi' (lo·lo' dropped), as Triton's 3xTF32 lowering;
- bfloat16/float16 operands: exact products (their mantissas fit fp32's) accumulated in float32, where the plain
  interpreter multiplies bf16's raw uint16 bits (``interpreter_takes_bf16_dots`` then tells the kernels they may
  pass bf16 operands, as on the GPU);
- float32 → bfloat16 casts round to nearest even (the plain interpreter truncates), bf16 → fp32 exact;
- split counts of a 132-SM card (H100 SXM) instead of the CPU's 4 (``triton_fwd.num_sms``).
Accumulation order and exp's last bits still differ (both far below the bounds).
"""

import numpy as np
import torch
import triton.language as tl
from triton._C.libtriton import ir
from triton.runtime import interpreter

GPU_SMS = 132  # H100 SXM
_TF32_TRUNC = np.uint32(0xFFFFE000)  # sign, exponent and TF32's 10 explicit mantissa bits


def tf32_truncate(x: np.ndarray) -> np.ndarray:
    """float32 → TF32 by dropping the 13 low mantissa bits (what the MMA reads from a raw fp32 register)."""
    return (np.ascontiguousarray(x, dtype=np.float32).view(np.uint32) & _TF32_TRUNC).view(np.float32)


def tf32_round(x: np.ndarray) -> np.ndarray:
    """float32 → TF32 rounding to nearest, ties away from zero (``cvt.rna.tf32.f32``)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    finite = (bits & np.uint32(0x7F800000)) != np.uint32(0x7F800000)
    rounded = np.where(finite, (bits + np.uint32(0x1000)) & _TF32_TRUNC, bits)
    return rounded.astype(np.uint32).view(np.float32)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 (stored as uint16, as the interpreter does) → float32, exact."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bits (uint16), round to nearest even (``cvt.rn.bf16.f32``)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


def _operand(handle) -> np.ndarray:
    """A dot operand as float32 values (bf16 decoded from its bits)."""
    if handle.dtype.scalar == tl.bfloat16:
        return bf16_to_f32(handle.data)
    if handle.dtype.scalar.primitive_bitwidth == 8:
        raise NotImplementedError("fp8 dot operands are not emulated")
    return handle.data.astype(np.float32)


def _dot(self, a, b, d, input_precision, max_num_imprecise_acc):
    """``InterpreterBuilder.create_dot`` with the GPU's operand precision (module docstring)."""
    x, y = _operand(a), _operand(b)
    f32 = a.dtype.scalar == tl.float32 and b.dtype.scalar == tl.float32
    if f32 and input_precision == ir.INPUT_PRECISION.TF32:
        out = np.matmul(tf32_truncate(x), tf32_truncate(y))
    elif f32 and input_precision == ir.INPUT_PRECISION.TF32x3:
        xh, yh = tf32_round(x), tf32_round(y)
        xl, yl = tf32_round(x - xh), tf32_round(y - yh)
        out = np.matmul(xh, yl) + np.matmul(xl, yh) + np.matmul(xh, yh)
    else:  # ieee fp32, or half operands: exact products, fp32 sums
        out = np.matmul(x, y)
    return interpreter.TensorHandle(out.astype(np.float32) + d.data, d.dtype.scalar)


_dot.handles_bf16 = True


def _cast(self, src, dst_type):
    """``InterpreterBuilder.cast_impl`` with exact bf16 → fp32 and round-to-nearest-even fp32 → bf16."""
    s, t = src.dtype.scalar, dst_type.scalar
    if s == tl.bfloat16 and t == tl.float32:
        return interpreter.TensorHandle(bf16_to_f32(src.data), t)
    if s in (tl.float32, tl.float16) and t == tl.bfloat16:
        return interpreter.TensorHandle(f32_to_bf16(src.data.astype(np.float32)), t)
    return _PLAIN_CAST(self, src, dst_type)


_PLAIN_CAST = interpreter.InterpreterBuilder.cast_impl


def emulate_gpu_numerics(monkeypatch) -> None:
    """Patches the interpreter (and the kernels' SM count) for the rest of the test; monkeypatch undoes it."""
    from trackformer.kernels.favor import triton_fwd

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", _dot)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "cast_impl", _cast)
    monkeypatch.setattr(triton_fwd, "num_sms", lambda device: GPU_SMS)
