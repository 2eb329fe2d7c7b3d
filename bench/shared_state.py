"""What keeping the whole shared state in the database costs (issue 12).

    python bench/shared_state.py

1. How much the database grows per tick: the bytes of each artifact kind a tick stores (model,
   drift reference, report PDF, confusion matrix) for a first tick, a tick with no drift and a tick
   that retrains and deploys, and the growth of the SQLite file.
2. What serving the dashboard costs per request: the page, each chart drawn from the database
   (first request after a tick: drawn; later requests: cached by data version), in-process with
   Flask's test client, medians of repeated requests.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

import sqlalchemy as sa  # noqa: E402 - after the project is on the path

import datagen  # noqa: E402
from bench import copy_project  # noqa: E402
from riskmonitor.config import load_config  # noqa: E402
from riskmonitor.pipeline.tick import run_tick  # noqa: E402
from riskmonitor.reporting import plots  # noqa: E402
from riskmonitor.store import db  # noqa: E402
from riskmonitor.web import dashboard  # noqa: E402
from riskmonitor.web.app import create_app  # noqa: E402


def stored_bytes(engine) -> dict[str, int]:
    with engine.connect() as conn:
        query = sa.select(db.artifacts.c.kind, sa.func.sum(db.artifacts.c.size)).group_by(db.artifacts.c.kind)
        return {kind: size for kind, size in conn.execute(query)}


def growth(root: Path) -> None:
    config = load_config(root, database_url=f"sqlite:///{root / 'bench.db'}")
    engine = db.make_engine(config.database_url)
    steps = [("first tick, 8,000 rows: deploys", None),
             ("2,000 more rows, same distribution", dict(rows=2_000, seed=11)),
             ("2,000 flipped rows: retrains, deploys", dict(rows=2_000, seed=12, flip=1.0))]
    print("database growth per tick (bytes stored in artifacts, and the SQLite file):")
    before, file_before = {}, 0
    for label, new in steps:
        if new:
            datagen.generate(**new).to_csv(config.input_folder_path / f"new_{new['seed']}.csv", index=False)
        tick = run_tick(config, engine)
        after, file_after = stored_bytes(engine), (root / "bench.db").stat().st_size
        added = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        print(f"  {label:<40} {tick.status:<9} +{sum(added.values()) / 1024:7.0f} KiB  "
              + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sorted(added.items()))
              + f"; file +{(file_after - file_before) / 1024:.0f} KiB")
        before, file_before = after, file_after
    engine.dispose()


def timed(client, path: str, repeat: int) -> float:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, (path, response.status_code)
        response.close()
    return statistics.median(seconds) * 1000


def serving(root: Path, repeat: int = 20) -> None:
    config = load_config(root, database_url=f"sqlite:///{root / 'bench.db'}")
    client = create_app(config).test_client()
    page = client.get("/").get_data(as_text=True)
    charts = list(plots.chart_files(config.features))
    print(f"dashboard per request (medians of {repeat}):")
    print(f"  GET / (the page)                    {timed(client, '/', repeat):7.1f} ms")
    cold = []
    for name in charts:
        dashboard._charts.clear()
        cold.append(timed(client, f"/charts/{name}.png", 1))
    url = page.split('src="/charts/f1.png?v=')[1].split('"')[0]
    warm = timed(client, f"/charts/f1.png?v={url}", repeat)
    print(f"  one chart, drawn (first after a tick) {statistics.median(cold):7.1f} ms  "
          f"(all {len(charts)}: {sum(cold):.0f} ms)")
    print(f"  one chart, cached                   {warm:7.1f} ms")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_project(Path(tmp))
        growth(root)
        serving(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
