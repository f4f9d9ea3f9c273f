"""Input validation shared by the separators (PerformerSeparator, ConvTasNet): clear errors, no crashes."""

import torch


def check_mixture(mixture, *, channels: int | None, device: torch.device) -> None:
    """Raises TypeError/ValueError unless ``mixture`` is a finite floating (B, C, T) tensor on ``device``
    (the finiteness check is skipped while compiling or capturing a CUDA graph).

    ``channels``: the required C, or None for any C >= 1.
    """
    if not isinstance(mixture, torch.Tensor):
        raise TypeError(f"mixture must be a torch.Tensor of shape (B, C, T), got {type(mixture).__name__}")
    if mixture.dim() != 3:
        raise ValueError(f"mixture must have shape (batch, channels, samples), got shape {tuple(mixture.shape)}")
    if not mixture.is_floating_point():
        raise TypeError(f"mixture must be a floating tensor (float32, float16, bfloat16), got {mixture.dtype}")
    b, c, t = mixture.shape
    if b < 1 or t < 1:
        raise ValueError(f"mixture needs at least one example and one sample, got shape {tuple(mixture.shape)}")
    if channels is not None and c != channels:
        raise ValueError(f"mixture has {c} channel(s) but the model was configured for channels={channels}")
    if c < 1:
        raise ValueError(f"mixture needs at least one channel, got shape {tuple(mixture.shape)}")
    if mixture.device != device:
        raise ValueError(f"mixture is on {mixture.device} but the model is on {device}; move one of them")
    capturing = mixture.is_cuda and torch.cuda.is_current_stream_capturing()
    if not (torch.compiler.is_compiling() or capturing) and not bool(torch.isfinite(mixture).all()):
        raise ValueError("mixture contains NaN or inf samples; clean the input audio first")
