"""The PNG figures of the reports and the dashboard, drawn with matplotlib's Agg backend.

Figures are built with matplotlib.figure.Figure rather than pyplot: no global state to leak
between calls, and nothing is ever shown (cron has no display).
"""

import datetime as dt
import re
from contextlib import contextmanager
from pathlib import Path

from riskmonitor.store import storage

STYLE = {
    "font.size": 11, "axes.titlesize": 13, "axes.titleweight": "bold", "axes.labelsize": 11,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "legend.fontsize": 9, "legend.frameon": False, "figure.dpi": 120,
}
CLASS_NAMES = ("stayed (0)", "exited (1)")
MAX_ANNOTATED_DEPLOYMENTS = 12  # beyond this, the hex labels would overlap


@contextmanager
def _styled():
    """The project's figure style, on the non-interactive backend (cron has no display)."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context(STYLE):
        yield


def _figure(width: float = 8.0, height: float = 4.2, top: float = 0.45, right: float = 0.25, bottom: float = 0.9,
            left: float = 0.95):
    """A figure of one axes with fixed margins in inches: room for the title (top), the y tick labels and
    label (left: numbers up to seven characters wide), the x tick labels, x label and a legend row below
    (bottom). Fixed margins draw in half the time of matplotlib's constrained layout, which lays every
    text out several times over."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
    return figure, figure.subplots()


def _legend(figure) -> None:
    """The legend in a row below the axes, in the figure's bottom margin: never over the data."""
    figure.legend(loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=3)


def _save(figure, path: Path | None) -> Path | bytes:
    """Write the PNG atomically (a person never sees a half-written image); without a path, its bytes."""
    if path is None:  # the dashboard, drawn at request time from the database
        import io

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    storage.replace_atomically(path, lambda handle: figure.savefig(handle, format="png"))
    return path


def _time_axis(ax, times: list[dt.datetime]) -> None:
    """Dates on the x axis, zoomed to the ticks: a single tick would otherwise span years."""
    import matplotlib.dates as mdates

    if times:
        low, high = min(times), max(times)
        pad = max((high - low) * 0.06, dt.timedelta(minutes=1))
        ax.set_xlim(low - pad, high + pad)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    # Ticks minutes apart get second-level labels: show them as clock times, not a bare "30".
    formats = ["%Y", "%b", "%d", "%H:%M", "%H:%M", "%H:%M:%S"]
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, formats=formats))
    ax.set_xlabel("time of tick (UTC)")


FIXED_CHARTS = ("f1", "confusionmatrix", "timing")  # and one trend chart per feature


def chart_files(features) -> dict[str, str]:
    """Every chart's name and its file name: the report's PNGs in static/, the dashboard's URLs."""
    return {**{name: f"{name}.png" for name in FIXED_CHARTS}, **{feature: file_name(feature) for feature in features}}


def file_name(feature: str) -> str:
    """static/<feature>.png, with anything but letters, digits, '.', '_' and '-' replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", feature) + ".png"


def confusion_matrix(stored: dict, path: Path | None) -> Path | bytes:
    """Heatmap of the production model's 2x2 confusion matrix (reporting.confusion) with the count and
    the share of all rows in each cell."""
    import numpy as np

    matrix = np.asarray(stored["matrix"])
    title = f"Production model {stored['model'][:8]}\non {stored['rows']:,} held-out rows"
    with _styled():
        figure, ax = _figure(6.4, 5.4, top=0.75, right=1.0, bottom=0.6, left=1.3)  # a two-line title,
        # class names on the y axis, a colour bar, no legend
        total, peak = int(matrix.sum()), int(matrix.max())
        image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(peak, 1))
        for (actual, predicted), count in _cells(matrix):
            share = count / total if total else 0.0
            ax.text(predicted, actual, f"{count:,}\n{share:.1%}", ha="center", va="center", fontsize=15,
                    color="white" if count > peak / 2 else "black")
        ax.set_xticks([0, 1], CLASS_NAMES)
        ax.set_yticks([0, 1], CLASS_NAMES)
        ax.set(xlabel="predicted", ylabel="actual", title=title)
        ax.grid(False)
        ax.spines[:].set_visible(True)  # a heatmap is framed on all four sides
        figure.colorbar(image, ax=ax, label="rows", shrink=0.8)
        return _save(figure, path)


def _cells(matrix):
    return (((i, j), int(matrix[i][j])) for i in range(2) for j in range(2))


def f1_history(scores: list, deployments: list, path: Path | None) -> Path | bytes:
    """F1 of the production model on each tick's new data, with each deployment marked."""
    with _styled():
        figure, ax = _figure()
        checks = [r for r in scores if r.dataset == "newdata"]
        times = [r.started_at for r in checks]
        ax.plot(times, [r.f1_score for r in checks], "o-", color="tab:blue", label="F1 on each tick's new data")
        _mark_deployments(ax, deployments, times)
        ax.set(title="F1 score of the production model", ylabel="F1 score", ylim=(0, 1.08))
        _time_axis(ax, [*times, *(d.deployed_at for d in deployments)])
        _legend(figure)
        return _save(figure, path)


def _mark_deployments(ax, deployments: list, check_times: list) -> None:
    """A star and a dotted line at each deployment; the deployed model's F1 as a step until the next."""
    if not deployments:
        return
    times, values = [d.deployed_at for d in deployments], [d.f1_score for d in deployments]
    end = max([*times, *check_times])
    ax.step([*times, end], [*values, values[-1]], where="post", color="tab:green", alpha=0.6,
            label="F1 when deployed (test data)")
    ax.scatter(times, values, marker="*", s=180, color="tab:green", zorder=3, label="deployment")
    for deployed, when, value in zip(deployments, times, values, strict=True):
        ax.axvline(when, color="tab:green", linestyle=":", linewidth=1)
        if len(deployments) <= MAX_ANNOTATED_DEPLOYMENTS:
            ax.annotate(deployed.hex[:8], (when, value), xytext=(0, 9), textcoords="offset points",
                        ha="center", fontsize=8, color="tab:green")


def timings(rows: list, path: Path | None) -> Path | bytes:
    """Seconds taken by each step (ingestion.py, training.py) in the ticks that ran it."""
    with _styled():
        figure, ax = _figure()
        for step in sorted({r.file for r in rows}):
            mine = [r for r in rows if r.file == step]
            ax.plot([r.started_at for r in mine], [r.timing for r in mine], "o-", label=step)
        ax.set(title="Step timings per tick", ylabel="seconds")
        ax.set_ylim(bottom=0)
        _time_axis(ax, [r.started_at for r in rows])
        if rows:
            _legend(figure)
        return _save(figure, path)


def feature_trend(feature: str, rows: list, path: Path | None) -> Path | bytes:
    """Mean, median and standard deviation of one feature of the ingested data after each tick."""
    with _styled():
        figure, ax = _figure(6.4, 3.9)  # shown two to a row in the PDF
        mine = [r for r in rows if r.feature == feature]
        times = [r.started_at for r in mine]
        for stat, style in (("mean", "o-"), ("median", "s--"), ("std", "^:")):
            values = [float("nan") if getattr(r, stat) is None else getattr(r, stat) for r in mine]
            ax.plot(times, values, style, label=stat)
        ax.set(title=f"{feature}: ingested data after each tick", ylabel="value")
        _time_axis(ax, times)
        if mine:
            _legend(figure)
        return _save(figure, path)
