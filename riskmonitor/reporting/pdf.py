"""The PDF report of one tick, laid out with reportlab from the Facts read for it (riskmonitor.reporting.report)."""

import io
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from riskmonitor.config import Config
from riskmonitor.data.validation import excerpt
from riskmonitor.drift import decisions

F1_ROWS = 20  # the PDF's F1 table: the most recent records (the plot shows them all)
FILE_ROWS = 20  # the PDF's files table: the rest are counted and found on the dashboard and /runs
MESSAGE_CHARS = 1500  # the run's message in the summary table: a table cell must fit on a page


@dataclass
class Facts:
    """What one report shows, read from the database in one go."""

    run: object
    production: object
    files: list
    scores: list  # the newest F1 records, oldest first
    drift: list
    stats: list
    missing: list
    timings: list
    outdated: list
    decision: object = None  # decisions.Decision of the tick, None when it scored nothing and trained nothing


def _when(timestamp, zone: str = " UTC") -> str:
    return "-" if timestamp is None else timestamp.strftime("%Y-%m-%d %H:%M:%S") + zone


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


class _Story:
    """The PDF's flowables, with the styles and the frame width they are laid out in."""

    def __init__(self, width: float):
        from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet

        self.width, self.flowables = width, []
        sheet = getSampleStyleSheet()
        self.styles = {"title": sheet["Title"], "h2": sheet["Heading2"], "body": sheet["BodyText"],
                       "cell": ParagraphStyle("cell", parent=sheet["BodyText"], fontSize=8.5, leading=10.5),
                       "note": ParagraphStyle("note", parent=sheet["BodyText"], fontSize=8.5, textColor="#555555")}

    def text(self, text: str, style: str = "body", markup: bool = False) -> None:
        from reportlab.platypus import Paragraph

        self.flowables.append(Paragraph(text if markup else escape(text), self.styles[style]))

    def heading(self, text: str) -> None:
        from reportlab.platypus import CondPageBreak

        self.flowables.append(CondPageBreak(4.5 * self.styles["h2"].leading))  # never a heading alone at a page foot
        self.text(text, "h2")

    def table(self, header: list[str], rows: list[list], widths: list[float]) -> None:
        """A table whose cells wrap (Paragraphs): long file names and reasons stay inside the page."""
        from reportlab.lib import colors
        from reportlab.platypus import Paragraph, Table, TableStyle

        cell = self.styles["cell"]
        data = [[Paragraph(f"<b>{escape(h)}</b>", cell) for h in header]]
        data += [[Paragraph(escape(str(v)), cell) for v in row] for row in rows]
        table = Table(data, colWidths=[w * self.width for w in widths], repeatRows=1, hAlign="LEFT")
        table.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde6f0")),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f5f7fa")]),
            ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#b0b8c4")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]))
        self.space(4)
        self.flowables.append(table)

    def image(self, path: Path, share: float = 1.0) -> None:
        """A PNG scaled to a share of the frame width, keeping its aspect ratio."""
        from reportlab.lib.utils import ImageReader
        from reportlab.platypus import Image

        width, height = ImageReader(str(path)).getSize()
        scale = share * self.width / width
        self.flowables.append(Image(str(path), width=width * scale, height=height * scale, hAlign="CENTER"))

    def space(self, height: float = 6) -> None:
        from reportlab.platypus import Spacer

        self.flowables.append(Spacer(1, height))

    def images(self, paths: list[Path], per_row: int = 2) -> None:
        """Small multiples: PNGs side by side, per_row to a row."""
        from reportlab.lib.utils import ImageReader
        from reportlab.platypus import Image, Table

        cell_width = self.width / per_row
        cells = []
        for path in paths:
            width, height = ImageReader(str(path)).getSize()
            scale = (cell_width - 4) / width
            cells.append(Image(str(path), width=width * scale, height=height * scale))
        rows = [cells[i:i + per_row] + [""] * (per_row - len(cells[i:i + per_row])) for i in range(0, len(cells), per_row)]
        self.flowables.append(Table(rows, colWidths=[cell_width] * per_row, hAlign="LEFT"))


def render_pdf(config: Config, facts: Facts, images: dict[str, Path]) -> bytes:
    """The report as A4 PDF bytes: summary, files, F1, drift, confusion matrix, statistics, timings, packages."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import cm
    from reportlab.platypus import SimpleDocTemplate

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=1.8 * cm, rightMargin=1.8 * cm, topMargin=1.6 * cm,
                            bottomMargin=1.8 * cm, title=f"Risk assessment report {facts.run.hex}",
                            author="Dynamic Risk Assessment System")
    story = _Story(doc.width)
    for section in (_summary, _files, _scores, _drift, _confusion, _statistics, _missing, _timings, _outdated):
        section(story, config, facts, images)
    footer = _footer(facts.run.hex)
    doc.build(story.flowables, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


def _footer(run_hex: str):
    from reportlab.lib.units import cm

    def draw(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillGray(0.4)
        canvas.drawString(doc.leftMargin, 1.0 * cm, f"Dynamic Risk Assessment System - report of tick {run_hex}")
        canvas.drawRightString(doc.leftMargin + doc.width, 1.0 * cm, f"page {doc.page}")
        canvas.restoreState()

    return draw


def _summary(story: _Story, config: Config, facts: Facts, images) -> None:
    run, production = facts.run, facts.production
    story.text(f"Risk assessment report<br/>tick {escape(run.hex)}", "title", markup=True)
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    story.table(["run", run.hex], [
        ["status", run.status],
        ["started", _when(run.started_at)],
        ["finished", f"{_when(run.finished_at)} ({_fmt(seconds, '.1f')} s)"],
        ["production model", f"{production.hex}: F1 {production.f1_score:.4f} on held-out data, "
                             f"trained on {production.train_rows:,} rows, deployed {_when(production.deployed_at)}"],
        ["what happened", excerpt(run.message or "-", MESSAGE_CHARS)],
    ], [0.22, 0.78])


def _files(story: _Story, config: Config, facts: Facts, images) -> None:
    story.heading("Files of this tick")
    if not facts.files:
        story.text("No new files in this run (a forced tick, or training.py run alone).")
        return
    shown = sorted(facts.files, key=lambda f: f.status != "quarantined")[:FILE_ROWS]  # quarantined first
    rows = [[excerpt(f.file, 120), f"{f.rows:,}", f.status, excerpt(f.error or "-", 300)] for f in shown]
    story.text("Rows: what each file added to the data sets (rows already there are not counted again).", "note")
    story.table(["file", "rows", "status", "reason for quarantine"], rows, [0.34, 0.12, 0.14, 0.4])
    if len(facts.files) > len(shown):
        story.text(f"... and {len(facts.files) - len(shown):,} more file(s): see the dashboard's quarantined "
                   "files or /runs.", "note")


def _scores(story: _Story, config: Config, facts: Facts, images) -> None:
    story.heading("Model performance (F1)")
    story.text(f"Production model {facts.production.hex}: F1 {facts.production.f1_score:.4f} on the held-out "
               "test data when it was deployed. The plot shows its F1 on each tick's new data and every deployment.")
    story.image(images["f1"])
    recent = list(reversed(facts.scores[-F1_ROWS:]))
    rows = [[_when(r.started_at, zone=""), r.hex, r.model_hex, "new data" if r.dataset == "newdata" else "test data",
             _fmt(r.rows, ","), f"{r.f1_score:.4f}", "yes" if r.is_production else ""] for r in recent]
    story.text(f"The {len(rows)} most recent F1 records, newest first:", "note")
    story.table(["time (UTC)", "tick", "model", "scored on", "rows", "F1", "production"], rows,
                [0.19, 0.18, 0.18, 0.12, 0.12, 0.09, 0.12])


def _drift(story: _Story, config: Config, facts: Facts, images) -> None:
    story.heading("Drift")
    decision = facts.decision
    if decision is None:
        story.text("<b>Model drift decision.</b> None: this tick neither scored new data nor trained a model.",
                   markup=True)
    else:
        _decision(story, decision)
    story.space()
    if not facts.drift:
        story.text("Data drift: not computed (no model in production before this tick, or it has no saved training data).")
        return
    story.text(f"<b>Data drift</b> of this tick's new rows against the training data of the model in production "
               f"before it. A feature has drifted when its PSI is at least {config.psi_threshold:g}; the "
               "Kolmogorov-Smirnov p-value is shown for reference only, since with many rows it flags even "
               "trivial differences.", markup=True)
    rows = [[d.feature, _fmt(d.statistic), _fmt(d.p_value, ".3g"), _fmt(d.psi, ".3f"), "drifted" if d.drifted else "no"]
            for d in facts.drift]
    story.table(["feature", "KS statistic", "KS p-value", "PSI", "verdict"], rows, [0.36, 0.16, 0.16, 0.16, 0.16])


def _decision(story: _Story, d) -> None:
    """The tick's decision record, read from its columns."""
    verdict = ("drift" if d.model_drifted else "no drift") if d.model_drifted is not None else "not tested"
    story.text(f"<b>Model drift decision: {escape(verdict)}; "
               f"{'deployed' if d.deployed else 'not deployed'}.</b> {escape(d.deploy_reason or '')}", markup=True)
    rows = [["decided by", d.decided_by + (f" ({d.reason})" if d.reason else "")]]
    if d.model_drifted is not None:
        reference = f"reference F1 {_fmt(d.reference_f1)}" + (f" on {d.reference_rows:,} rows" if d.reference_rows else "")
        rows += [["model drift test", f"{d.drift_test}: F1 {_fmt(d.new_f1)} on {_fmt(d.new_rows, ',')} new rows "
                                      f"vs threshold {_fmt(d.drift_threshold)} ({reference})"],
                 ["sampling error", _spread(d.drift_std_error, d.drift_interval_low, d.drift_interval_high)]]
    if d.data_drifted is not None:
        rows.append(["data drift", ", ".join(d.drifted_features) if d.data_drifted else "none"])
    if d.episode is not None:
        where = decisions.episode_text(d)  # what the tick did to it, as the summary says it
        rows.append(["drift episode", f"#{d.episode}, {d.episode_outcome}; verdict {d.verdict}"
                                      + (f": {where}" if where else "")])
    if d.challenger_hex is not None:
        rows += [["retrained because", d.retrain_reason or "-"],
                 ["challenger vs champion", f"{d.challenger_hex}: F1 {_fmt(d.challenger_f1)} vs "
                                            f"{d.champion_hex or 'none'}: {_fmt(d.champion_f1)} on "
                                            f"{_fmt(d.eval_rows, ',')} held-out rows"],
                 ["difference", f"{_fmt(d.f1_difference, '+.4f')}; "
                                + _spread(None, d.difference_low, d.difference_high)],
                 ["rule", d.gate_rule + (f", margin {d.gate_margin:.4f}" if d.gate_margin is not None else "")]]
    story.table(["decision", "values"], rows, [0.25, 0.75])


def _spread(std_error, low, high) -> str:
    """Standard error and interval, or that the rule applied does not compute them."""
    parts = [f"standard error {std_error:.4f}"] if std_error is not None else []
    if low is not None and high is None:  # the gate's one-sided bound
        parts.append(f"lower confidence bound {_fmt(low, '+.4f')}")
    elif low is not None or high is not None:
        parts.append(f"interval {_fmt(low)} to {_fmt(high)}")
    return ", ".join(parts) or "not computed by this rule"


def _confusion(story: _Story, config: Config, facts: Facts, images) -> None:
    story.heading("Confusion matrix")
    story.text("The production model on the held-out test data: each cell shows the number of clients and "
               "their share of all rows.")
    story.image(images["confusionmatrix"], share=0.62)


def _statistics(story: _Story, config: Config, facts: Facts, images) -> None:
    story.heading("Feature statistics")
    story.text("All ingested rows (finaldata.csv) after this tick: the training data of a model deployed by it.")
    rows = [[s.feature, _fmt(s.mean, ",.2f"), _fmt(s.median, ",.2f"), _fmt(s.std, ",.2f")] for s in facts.stats]
    story.table(["feature", "mean", "median", "standard deviation"], rows, [0.4, 0.2, 0.2, 0.2])
    story.space()
    story.images([images[f] for f in config.features])


def _missing(story: _Story, config: Config, facts: Facts, images) -> None:
    story.heading("Missing data")
    rows = [[m.feature, f"{m.percentage:.2%}"] for m in facts.missing]
    story.table(["column", "missing values"], rows, [0.4, 0.2])


def _timings(story: _Story, config: Config, facts: Facts, images) -> None:
    story.heading("Step timings")
    rows = [[t.file, f"{t.timing:.2f}"] for t in facts.timings]
    story.table(["step", "seconds"], rows, [0.4, 0.2])
    story.space()
    story.image(images["timing"], share=0.85)


def _outdated(story: _Story, config: Config, facts: Facts, images) -> None:
    story.heading("Outdated packages")
    if not facts.outdated:
        story.text("None / not available: every requirement is up to date, or pip could not reach the package index.")
        return
    story.table(["package", "installed", "latest"], [[p.package, p.installed, p.latest] for p in facts.outdated],
                [0.4, 0.2, 0.2])

