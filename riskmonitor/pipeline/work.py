"""The values a tick passes from step to step: what it found, what it ingested, everything it decided
(Work, written in one transaction), what run_tick returns, and the seconds of each stage."""

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from riskmonitor.data.datasets import NewRows, State
from riskmonitor.drift import decisions
from riskmonitor.drift.decisions import Challenger, DataDrift, Decision, Gate, ModelDrift


@dataclass(frozen=True)
class Found:
    """What a tick finds before it works."""

    new_files: list
    production: object  # the models row in production, None before the first deployment
    unreported: str | None  # the latest tick that did work, if it was killed before its report was written
    state: State  # the data sets as the tick found them: its commit succeeds only if they did not move since


@dataclass(frozen=True)
class Ingested:
    """What the tick ingested: the ingested_files rows to store, the new rows, and the training rows'
    statistics with them."""

    files: tuple[dict, ...]
    new: NewRows | None  # stored by the tick's commit
    new_data: object  # the new rows as a pandas.DataFrame
    stats: dict | None  # running statistics of the training rows, this tick's included; None until read
    summary: str


@dataclass(frozen=True)
class Work:
    """Everything a tick found and decided; one function writes it in one transaction."""

    hex: str
    ingested: Ingested | None = None
    diagnostics: dict = field(default_factory=dict)  # table name -> rows (diagnostics.py)
    drift: ModelDrift | None = None
    data_drift: DataDrift | None = None
    challenger: Challenger | None = None
    gate: Gate | None = None
    champion_hex: str | None = None  # the model in production when the tick started
    decision: Decision | None = None
    batch: object = None  # scoring.Confusion of the production model on this tick's new rows
    lost: str = ""  # why the commit stored nothing: another tick committed first (datasets.LostRace)
    episode: object = None  # episodes.Step: the drift episode this tick opened, carried or ended

    @property
    def status(self) -> str:
        """The run's status, decided here only."""
        if self.lost:
            return "no_new_data"
        if self.gate is not None:
            return "deployed" if self.gate.deploy else "kept"
        if self.episode is not None and self.episode.outcome == "open":
            return "kept"  # drift is open: production stays while the evidence grows
        if self.ingested is not None and not self.ingested.new_data.empty:
            return "no_drift"
        return "no_new_data"

    @property
    def summary(self) -> str:
        """runs.message: one line rendered from the values."""
        if self.lost:
            return self.lost
        return decisions.summary(self.ingested.summary if self.ingested else "", self.decision)

    @property
    def scores(self) -> list[tuple]:
        """(model hex, scoring.Confusion, dataset) of the production model scored by this tick: on its new
        rows (the drift evidence) and in the gate."""
        scores = []
        if self.batch is not None:
            scores.append((self.champion_hex, self.batch, "newdata"))
        if self.gate is not None and self.gate.champion_counts is not None:
            scores.append((self.champion_hex, self.gate.champion_counts, "gate"))
        return scores


@dataclass(frozen=True)
class TickResult:
    """What run_tick returns: the run, its status and decision, and how its report went."""

    hex: str
    status: str
    summary: str
    decision: Decision | None
    report_error: str  # '' when the plots and the PDF were written (or none were due)
    stages: dict[str, float]  # seconds per stage
    drift: ModelDrift | None = None  # the model-drift verdict, with the rule behind it


class Stopwatch:
    """Seconds per stage of one tick (ingestion and training go to script_timing)."""

    def __init__(self):
        self.stages: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - started

