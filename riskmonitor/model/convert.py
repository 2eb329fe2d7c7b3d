"""Models stored as pickles by an earlier release, rewritten once as plain numbers (fitted.py).

Unpickling runs whatever code the bytes name, so this happens only on a person's word that the database has
only ever been written by this system: `python dbsetup.py --convert-models --trust-stored-pickles`. Nothing
else in the system ever unpickles.
"""

import pickle

import sqlalchemy as sa

from riskmonitor.config import Config
from riskmonitor.model import fitted
from riskmonitor.model.training import model_path, relative_to_project
from riskmonitor.store import db, storage


def stored_pickles(conn: sa.Connection) -> list[str]:
    """The hex of every model whose stored bytes are a pickle."""
    rows = conn.execute(sa.select(db.artifacts.c.hex, sa.func.substr(db.artifacts.c.data, 1, 2).label("head"))
                        .where(db.artifacts.c.kind == "model")).all()
    return [row.hex for row in rows if bytes(row.head).startswith(fitted.PICKLE_PROTOCOLS)]


def convert_stored_pickles(config: Config, engine: sa.Engine) -> list[str]:
    """Rewrite each model stored as a pickle as its fitted numbers, in one transaction: its bytes in the
    database, its models row (sha256, path), and, where this host has them, its archived file and the
    production file. The hex of each model converted."""
    converted = []
    with engine.begin() as conn:
        for model_hex in stored_pickles(conn):
            row = db.get_model(conn, model_hex)
            data = db.artifact(conn, "model", model_hex).data
            if storage.sha256_bytes(data) != row.sha256:
                raise storage.ModelIntegrityError(f"model {model_hex}'s stored bytes do not match its recorded sha256: "
                                                  "not converted")
            model = fitted.FittedModel.of(pickle.loads(data))  # noqa: S301 - the person running this trusts the bytes
            new = model.to_bytes()
            path = model_path(config, model_hex)
            sha = db.store_artifact(conn, "model", model_hex, new)
            conn.execute(db.models.update().where(db.models.c.hex == model_hex)
                         .values(sha256=sha, path=relative_to_project(path, config)))
            for file in [path, *([config.production_model] if row.is_production else [])]:
                if file.parent.is_dir():  # a host with the project's folders: its files follow the database
                    storage.replace_atomically(file, lambda handle, data=new: handle.write(data))
            converted.append(model_hex)
    return converted
