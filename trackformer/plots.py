"""Pictures: the mixture spectrogram with the M masks of a separation, and the evaluation summary.

Each function draws on its own ``matplotlib.figure.Figure`` and writes one PNG (the Agg canvas, no display
needed); pyplot is never imported, so a user's session keeps its matplotlib backend and its figures.
matplotlib is the optional ``plots`` extra: callers ask :func:`unavailable` before drawing and skip the picture
(after writing their results) with its one line.
"""

import os

import numpy as np

INSTALL_HINT = "pip install 'trackformer[plots]'"


def unavailable() -> str | None:
    """None when matplotlib imports; otherwise one line saying so and how to get it (for the caller to print
    when it skips a picture)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        return f"matplotlib is not installed ({err}): {INSTALL_HINT} to get the pictures"
    return None


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, path: str, dpi: int) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_masks(mix_db: np.ndarray, masks: np.ndarray, *, sample_rate: int, seconds_per_column: float, path: str,
               title: str = "", input_sample_rate: int | None = None) -> str:
    """Writes :func:`masks_figure` to ``path`` and returns it."""
    fig = masks_figure(mix_db, masks, sample_rate=sample_rate, seconds_per_column=seconds_per_column, title=title,
                       input_sample_rate=input_sample_rate)
    return _save(fig, path, dpi=80)


def masks_figure(mix_db: np.ndarray, masks: np.ndarray, *, sample_rate: int, seconds_per_column: float,
                 title: str = "", input_sample_rate: int | None = None):
    """Mixture spectrogram (dB, (F, W)) above the M masks ((M, F, W), values in [0, 1]); time in seconds,
    frequency in Hz up to ``sample_rate / 2`` (the rate the masks were computed at). When the input's rate
    ``input_sample_rate`` is higher, the title says which part of its bandwidth the picture shows."""
    mix_db, masks = np.asarray(mix_db), np.asarray(masks)
    if mix_db.ndim != 2 or masks.ndim != 3 or masks.shape[1:] != mix_db.shape:
        raise ValueError(f"plot_masks needs mix_db (F, W) and masks (M, F, W), got {mix_db.shape} and {masks.shape}")
    m = masks.shape[0]
    shown = sample_rate / 2
    if input_sample_rate is not None and input_sample_rate > sample_rate:
        note = (f"shows 0–{shown:,.0f} Hz of the input's 0–{input_sample_rate / 2:,.0f} Hz (the model runs at "
                f"{sample_rate:,} Hz)")
        title = f"{title}\n{note}" if title else note
    extent = (0.0, mix_db.shape[1] * seconds_per_column, 0.0, shown)
    fig = _figure(figsize=(10, 1.3 * (m + 1) + 0.6 + 0.3 * title.count("\n")))
    axes = fig.subplots(m + 1, 1, sharex=True, squeeze=False)[:, 0]
    top = float(np.max(mix_db))
    im = axes[0].imshow(mix_db, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=top - 80, vmax=top)
    axes[0].set_ylabel("mix\nHz")
    fig.colorbar(im, ax=axes[0], label="dB", pad=0.01)
    for i in range(m):
        im = axes[i + 1].imshow(masks[i], origin="lower", aspect="auto", extent=extent, cmap="viridis", vmin=0,
                                vmax=1)
        axes[i + 1].set_ylabel(f"source {i + 1}\nHz")
        fig.colorbar(im, ax=axes[i + 1], pad=0.01)
    axes[-1].set_xlabel("time (s)")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig


def plot_evaluation(by_active: dict, path: str, title: str = "") -> str:
    """Mean ± std SI-SNRi (dB) per number of active stems, one-to-one beside MixIT-style.

    ``by_active``: {n_active: {"one_to_one_sisnri": [values], "mixit_sisnri": [values]}}. Writes ``path``."""
    keys = sorted(by_active)
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    x = np.arange(len(keys))
    for offset, metric, label in ((-0.2, "one_to_one_sisnri", "one-to-one"), (0.2, "mixit_sisnri", "MixIT-style")):
        values = [np.asarray(by_active[k][metric], dtype=float) for k in keys]
        ax.bar(x + offset, [v.mean() for v in values], width=0.4, yerr=[v.std() for v in values], capsize=3,
               label=label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, [f"{k} ({len(by_active[k]['mixit_sisnri'])})" for k in keys])
    ax.set_xlabel("active stems (segments)")
    ax.set_ylabel("SI-SNRi (dB)")
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path, dpi=100)
