"""Conventions the report figures share, so that a reader can judge each at a glance: every panel titled, a chance
line wherever accuracy is plotted, binomial error bars on accuracies, legends outside the data, and lines that would
overlap drawn with distinct markers and small horizontal offsets."""

from __future__ import annotations

import numpy as np

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
"""One marker per series (α, γ, ...), in order: coinciding series stay distinguishable."""


def offsets(n: int, log: bool, spread: float = 0.04) -> list[float]:
    """Horizontal offsets of `n` series drawn at the same x: factors around 1 on a log axis (x · f), shifts around
    0 on a linear one (x + s, in units of the spacing between x values), `spread` apart."""
    centred = (np.arange(n) - (n - 1) / 2) * spread
    return list(np.exp(centred)) if log else list(centred)


def chance_line(ax, chance: float, label: str = "chance") -> None:
    """A dotted horizontal line at the chance level of the accuracy plotted on `ax` (skipped when unknown)."""
    if chance == chance:  # not NaN
        ax.axhline(chance, color="gray", linestyle=":", linewidth=1.2, label=label, zorder=0)


def legend_outside(fig, ax=None, **kwargs) -> None:
    """The legend of `ax` (default: the figure's first axes) to the right of the figure, never over the data; the
    figure's bbox_inches="tight" save keeps it."""
    ax = ax if ax is not None else fig.axes[0]
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(list(unique.values()), list(unique.keys()), loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=8, frameon=False, **kwargs)
