"""FAVOR+ limits: the head dims, feature counts and (Triton) sequence lengths the op takes, defined and validated
here only (the op, ``trackformer.nn.FavorAttention`` and model configs all call these checks).

- head dim D ∈ HEAD_DIMS: the kernels' tiles span D (a power of two ≥ 16 for the tensor-core dots);
- m random features, a multiple of FEATURE_MULTIPLE in [FEATURE_MULTIPLE, MAX_FEATURES]: the dots' feature
  blocks are masked to m, and the split state kernels hold all m ≤ 256 features of a block in registers;
- on the Triton backend, Lq and Lk ≤ MAX_TRITON_LENGTH (the CUDA grid's y limit × the smallest row tile).
"""

HEAD_DIMS = (16, 32, 64, 128)
FEATURE_MULTIPLE = 16
MAX_FEATURES = 512
MAX_TRITON_LENGTH = 65535 * 32


def check_head_dim(d: int, name: str = "head_dim D") -> None:
    """ValueError unless d is one of HEAD_DIMS; ``name`` says what d is in the message."""
    if d not in HEAD_DIMS:
        raise ValueError(f"{name} must be one of {HEAD_DIMS}, got {d}")


def check_features(m: int, name: str = "the number of random features m") -> None:
    """ValueError unless m is a multiple of FEATURE_MULTIPLE in [FEATURE_MULTIPLE, MAX_FEATURES]."""
    if isinstance(m, bool) or not isinstance(m, int) or m % FEATURE_MULTIPLE or not (
            FEATURE_MULTIPLE <= m <= MAX_FEATURES):
        raise ValueError(f"{name} must be a multiple of {FEATURE_MULTIPLE} in [{FEATURE_MULTIPLE}, {MAX_FEATURES}], "
                         f"got {m!r}")


def check_triton_length(lq: int, lk: int) -> None:
    """ValueError when a sequence is longer than the Triton kernels' grid allows."""
    if max(lq, lk) > MAX_TRITON_LENGTH:
        raise ValueError(f"the Triton FAVOR+ kernels take sequences of up to {MAX_TRITON_LENGTH} rows (CUDA grid "
                         f"limit), got Lq={lq}, Lk={lk}; split the sequence")
