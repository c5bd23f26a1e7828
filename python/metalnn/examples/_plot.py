"""The two-panel training-curve PNG the examples write (matplotlib optional)."""

from __future__ import annotations

from collections.abc import Sequence


def save_curves(path: str, loss_x: Sequence, loss: Sequence, loss_label: tuple[str, str], acc_x: Sequence,
                accuracies: Sequence[tuple[Sequence[float], str, str]], acc_title: str, loss_width: float = 1.0,
                acc_ylim: tuple[float, float] | None = None) -> bool:
    """Loss (log scale) on the left, accuracy curves ``(fractions, style, label)`` in % on the
    right; ``loss_label`` is (x label, y label). False (and a hint) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; pip install matplotlib)")
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(loss_x, loss, lw=loss_width)
    a.set(xlabel=loss_label[0], ylabel=loss_label[1], yscale="log", title="loss")
    for values, style, label in accuracies:
        b.plot(acc_x, [v * 100 for v in values], style, label=label)
    b.set(xlabel="epoch", ylabel="accuracy %", title=acc_title)
    if acc_ylim is not None:
        b.set_ylim(*acc_ylim)
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
