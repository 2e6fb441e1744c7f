"""The `quantiles` figure draws from result records and says when there is nothing to draw."""

from __future__ import annotations

import io

import pytest

from scheduler.analysis.bands import quantiles_figure

pytestmark = pytest.mark.unit


def records(with_distribution: bool) -> list[dict[str, object]]:
    out = []
    for width in (16, 256):
        for layer in range(1, 11):
            for quantity in ("preactivation", "gradient"):
                spread = 1.0 + layer / width * 8.0
                out.append(
                    {
                        "config_hash": f"c{width}",
                        "init": "kaiming_normal(a=0)",
                        "activation": "relu",
                        "depth": 10,
                        "width": width,
                        "layer": layer,
                        "quantity": quantity,
                        "mean_sq": 2.0,
                        "mean_sq_se": 0.02,
                        "mean_sq_q05": 2.0 / spread**2 if with_distribution else None,
                        "mean_sq_median": 2.0 / spread if with_distribution else None,
                        "mean_sq_q95": 2.0 * spread if with_distribution else None,
                        "theory_mean_sq": 2.0,
                        "theory_log_mean_sq": 0.69 - layer / width,
                    }
                )
    return out


def png(fig: object) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # type: ignore[attr-defined]
    return buf.getvalue()


def test_draws_both_quantities_for_every_configuration() -> None:
    fig = quantiles_figure(records(True))
    axes = fig.axes
    assert len(axes) == 2
    assert "pre-activations" in axes[0].get_title() and "gradients" in axes[1].get_title()
    labels = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert "width=16" in labels and "width=256" in labels
    assert "theory" in axes[0].get_ylabel()  # every record has theory_mean_sq
    assert len(png(fig)) > 10_000


def test_records_without_distributions_get_a_message() -> None:
    fig = quantiles_figure(records(False))
    text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "No per-trial distributions" in text
