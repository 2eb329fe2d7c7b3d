"""What a tick decides once it has ingested: the model-drift and data-drift verdicts, whether and on
which window it retrains, and the gate's verdict on the challenger against the champion."""

from riskmonitor.config import Config
from riskmonitor.data import datasets
from riskmonitor.data.datasets import NewRows
from riskmonitor.data.stats import training_data
from riskmonitor.drift import decisions, episodes, model_drift
from riskmonitor.drift.decisions import Challenger, DataDrift, Gate, ModelDrift
from riskmonitor.model.scoring import Confusion, confusion, evaluation_data, load_production_model
from riskmonitor.model.training import train_and_save
from riskmonitor.pipeline.work import Ingested, Stopwatch, Work
from riskmonitor.store import db


def decide(config: Config, engine, run_hex: str, production, ingested: Ingested, rows: dict, force: bool,
           clock: Stopwatch, stored_rows: int = 0) -> Work:
    """The drift verdicts, the drift episode they open, carry or end, and the challenger and the gate's
    decision when the tick retrains (`stored_rows`: the data sets' rows before this tick's)."""
    drift = batch = challenger = gate = episode = seen = None
    if production is not None:
        with engine.connect() as conn:
            episode = episodes.current(conn, production.hex)
        if not ingested.new_data.empty:
            with clock("drift_check"):
                drift, batch, seen = _check_drift(config, engine, production, ingested.new_data, episode)
    data_drift = _data_drift(config, rows)
    found = bool((drift and drift.drifted) or (data_drift and data_drift.drifted and config.data_drift_retrains))
    new_rows = len(ingested.new_data)
    if episode is None and found and production is not None:  # drift opens an episode: its first batch is
        window = drift.new_rows if drift and drift.drifted else new_rows  # the first the drift test pooled
        episode = episodes.Episode(None, stored_rows + new_rows - window)
    window = episode.rows(stored_rows, new_rows) if episode else None
    reason = _retrain_reason(config, production, drift, data_drift, force)
    if episode is not None and not force:
        reason = (reason or "drift episode: more evidence") if episodes.retrain_due(config, episode, window) else None
    if reason is not None:  # only a retrain reads the history: it trains on it, and describes it exactly
        with engine.connect() as conn:
            final = datasets.frame(conn, config, False, ingested.new)  # all training rows, this tick's last
        rows = {**rows, **training_data(final, config)}
        window = window if episode is not None else _retrain_window(config, production, drift, data_drift, ingested.new_data)
        model, challenger = _train(config, run_hex, final, reason, window, clock)
        with clock("evaluation"):
            gate = _evaluate(config, engine, production, model, window, episode is not None, ingested.new)
    step = _episode_step(config, episode, window, found, drift, gate, seen) if episode is not None else None
    champion = production.hex if production is not None else None
    decision = decisions.tick_decision(run_hex, drift, data_drift, challenger, gate, champion, step)
    return Work(run_hex, ingested, rows, drift, data_drift, challenger, gate, champion, decision, batch, episode=step)


def _episode_step(config: Config, episode: episodes.Episode, window: int, found: bool, drift: ModelDrift | None,
                  gate: Gate | None, seen: Confusion | None) -> episodes.Step:
    """Where the tick leaves its episode, and the alerts it sends for it (one per episode and outcome); `seen`:
    production's counts on every row of the episode's batches (it trained on none of them)."""
    challenger_rows = window if gate is not None else episode.challenger_rows
    judged = gate is not None and gate.champion_counts is not None
    # A challenger that looks better by more than the margin without the evidence to deploy it is no reason to
    # settle: the episode stays open, and it is judged again once the evidence has grown.
    no_better = judged and gate.difference < config.gate_margin
    if gate is not None and gate.deploy:
        outcome, verdict = "deployed", "deployed"
    elif no_better and not (drift and drift.drifted):  # kept with enough evidence, production's F1 has not fallen
        outcome, verdict = "acknowledged", "acknowledged"
    elif judged and drift and drift.drifted:  # F1 fell and the challenger lost: the second time, no better model
        outcome, verdict = "open", "degrading" if episode.challenger_rows is not None else "kept"
    elif not found and episode.quiet + 1 >= episodes.QUIET_TICKS:
        outcome, verdict = "returned", "no_drift"
    else:
        outcome, verdict = "open", "kept"
    # Data drift alone (production's F1 has not fallen) tells no one until it costs F1 (model drift), or its
    # episode deploys (the deployment's message): an acknowledged or returned shift is in the records only.
    wanted = [*(["drift"] if drift and drift.drifted else []), *(["degrading"] if verdict == "degrading" else [])]
    alerts = tuple(event for event in wanted if event not in episode.alerted)
    # Acknowledged: production's new F1 reference is its score on all of the episode's rows, five times the
    # held-out rows the gate judged on, so that the next ticks' drift test has a sharp reference.
    reference = (seen or gate.champion_counts) if outcome == "acknowledged" else None
    return episodes.Step(episode, outcome, verdict, challenger_rows, alerts, reference)


def _data_drift(config: Config, rows: dict[str, list[dict]]) -> DataDrift | None:
    """The data-drift verdict of the diagnostics' rows (PSI, or KS D beyond its noise); None when not measured."""
    measured = rows.get("data_drift", [])
    if not measured:
        return None
    drifted = tuple(r["feature"] for r in measured if r["drifted"])
    return DataDrift(drifted=bool(drifted), features=drifted, threshold=config.psi_threshold)


def _check_drift(config: Config, engine, production, new_data, episode: episodes.Episode | None):
    """Score the production model on the new rows and apply the configured drift test to them and to its
    earlier batches since deployment: (ModelDrift, this batch's scoring.Confusion, its counts on the open
    episode's batches and this one)."""
    with engine.connect() as conn:
        acknowledged = episodes.acknowledged(conn, production.hex)
        earlier = db.batches_since(conn, production.hex, acknowledged.closed_hex if acknowledged else None)
        _, model = load_production_model(conn, config)
    batch = confusion(model, new_data, config)
    if acknowledged is not None:  # the references moved to the acknowledged episode's rows
        reference = episodes.reference_counts(acknowledged)
    else:  # a model recorded before counts were kept has only its F1
        reference = Confusion.of_row(production) if production.tp is not None else None
    # A sharper reference (pooled test): the batches older than the windows the test compares, outside any
    # drift episode, are evidence of the same regime; pooled into the reference, its error shrinks.
    sharpen = reference is not None and config.drift_test == "pooled"
    recent_from = len(earlier) - (model_drift.POOL_WINDOWS[-2] - 1)  # the last three, with this tick's batch
    open_episode = episode.id if episode is not None else None
    counts, absorbed, seen = [], [], batch  # seen: the open episode's batches and this one
    for number, row in enumerate(earlier):
        row_counts = Confusion.of_row(row)
        old = sharpen and number < recent_from and row.episode is None
        (absorbed if old else counts).append(row_counts)
        if open_episode is not None and row.episode == open_episode:
            seen += row_counts
    reference = sum(absorbed, reference) if sharpen else reference
    pooled = f"; the reference pools {len(absorbed)} earlier batch(es) with its own rows" if absorbed else ""
    reference_f1 = reference.f1 if reference is not None else production.f1_score
    verdict = model_drift.detect_model_drift([*counts, batch], reference_f1, reference, config)
    drift = ModelDrift(test=verdict.test, new_f1=verdict.f1, new_rows=verdict.rows, reference_f1=verdict.reference_f1,
                       reference_rows=reference.rows if reference else None, threshold=verdict.threshold,
                       drifted=verdict.drifted, rule=verdict.rule + pooled, std_error=verdict.std_error)
    return drift, batch, seen


def _retrain_reason(config: Config, production, drift: ModelDrift | None, data: DataDrift | None,
                    force: bool) -> str | None:
    """Why the tick trains a challenger; None when it does not."""
    if production is None:
        return "no model in production yet"
    if drift is not None and drift.drifted:
        return "model drift"
    if data is not None and data.drifted and config.data_drift_retrains:
        return "data drift"
    return "forced (--force)" if force else None


def _retrain_window(config: Config, production, drift: ModelDrift | None, data: DataDrift | None,
                    new_data) -> int | None:
    """How many of the latest new rows showed the drift (None: no drift, learn all of history): the rows
    the drift test pooled, or this tick's rows for data drift alone. The challenger learns the training
    part of at least retrain_window_min_rows of them; the gate judges on the held-out part of the window
    alone: the new regime, not a mix."""
    if production is None:
        return None  # the first model: all of history
    if drift is not None and drift.drifted:
        return drift.new_rows
    return len(new_data) if data is not None and data.drifted else None  # --force on unchanged data: all of history


def _train(config: Config, run_hex: str, final, reason: str, window: int | None, clock: Stopwatch):
    """Train on the latest rows of the window (all ingested data without one) and save the model file:
    (model, Challenger)."""
    import sklearn.linear_model  # noqa: F401 - loaded before the clock starts: import time is not training time

    learned = None if window is None else max(window, config.retrain_window_min_rows)
    first_row = 0 if learned is None else max(0, len(final) - round(learned * (1 - config.test_fraction)))
    with clock("training"):
        model, path, sha = train_and_save(final.iloc[first_row:], config, run_hex)
    return model, Challenger(run_hex, path, sha, len(final) - first_row, reason, first_row)


def _evaluate(config: Config, engine, production, model, window: int | None, after_drift: bool,
              pending: NewRows | None) -> Gate:
    """The gate: challenger against champion on held-out rows of the window (recent rows neither trained on),
    paired (model_drift.gate): non-inferiority after a drift verdict, superiority without one."""
    held_out = evaluation_data(config, engine, pending)
    if window is not None:
        held_out = held_out.tail(max(1, round(window * config.test_fraction)))
    new = confusion(model, held_out, config)
    if production is None:
        return Gate(new.f1, None, new.rows, rule="first model", deploy=True, challenger_counts=new,
                    reason="no model in production: the first model is deployed")
    needed = episodes.held_out_needed(config)
    if window is not None and len(held_out) < needed:  # no gate yet: the drift evidence keeps accumulating
        return Gate(new.f1, None, new.rows, rule="too few recent held-out rows", deploy=False, challenger_counts=new,
                    reason=f"kept: {len(held_out)} held-out rows of the latest {window} new rows are too few to "
                           f"judge the challenger on the new regime (at least {needed})")
    with engine.connect() as conn:
        _, old_model = load_production_model(conn, config)
    verdict = model_drift.gate(model, old_model, held_out, config, after_drift)
    rule = "non-inferiority" if after_drift else "superiority"  # the full wording is in the reason
    return Gate(verdict.new.f1, verdict.old.f1, verdict.new.rows, rule=rule, deploy=verdict.deploy,
                reason=verdict.describe(), margin=-verdict.bar, difference=verdict.difference,
                interval_low=verdict.lower, challenger_counts=verdict.new, champion_counts=verdict.old)

