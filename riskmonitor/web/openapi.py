"""The API's contract as an OpenAPI 3.1 document (GET /openapi.json): every route, request body and
error response, each with its status code and a schema naming its required fields.
tests/test_openapi.py checks it against the app's routes; tests/fuzz_api.py fuzzes the app from it."""

import re

from riskmonitor.drift import decisions
from riskmonitor.reporting import plots
from riskmonitor.web.inputs import MAX_FILE_NAME, MAX_UPLOAD_NAME

JSON, CSV, TEXT = "application/json", "text/csv", "text/plain"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict, required: list[str] | None = None, extra: bool = False) -> dict:
    """An object schema; every property is required unless told otherwise."""
    return {"type": "object", "properties": properties, "required": list(properties) if required is None else required,
            "additionalProperties": extra}


def _map(values: dict) -> dict:
    """A non-empty object whose every value matches a schema (paths, methods, responses)."""
    return {"type": "object", "minProperties": 1, "additionalProperties": values}


NUMBER_OR_NULL = {"type": ["number", "null"]}
STRING_OR_NULL = {"type": ["string", "null"]}
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
HEX = {"type": "string", "pattern": "^[0-9a-f]+$"}


def _rows(width: int, types: list[str], description: str) -> dict:
    """[[a, b, ...], ...] rows of a fixed width (no prefixItems: schemathesis 4 rejects it in responses)."""
    return {"type": "array", "description": description,
            "items": {"type": "array", "minItems": width, "maxItems": width, "items": {"type": types}}}


def _decision() -> dict:
    """The decision record's schema, field by field from decisions.Decision (the API shows it as_json)."""
    import datetime as dt
    import types
    import typing

    kinds = {str: "string", bool: "boolean", int: "integer", float: "number", tuple: "array", dt.datetime: "string"}
    properties = {}
    for name, hint in typing.get_type_hints(decisions.Decision).items():
        optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
        base = next(a for a in hint.__args__ if a is not type(None)) if optional else hint
        base = typing.get_origin(base) or base
        schema = {"type": [kinds[base], "null"] if optional else kinds[base]}
        schema.update({"format": "date-time"} if base is dt.datetime else {"items": {"type": "string"}} if base is tuple else {})
        properties[name] = schema
    return _obj(properties)


def _schemas(features: tuple[str, ...]) -> dict:
    run = _obj({"hex": HEX, "command": {"type": "string"}, "started_at": TIME, "finished_at": TIME_OR_NULL,
                "status": {"type": "string"}, "message": STRING_OR_NULL, "report_error": STRING_OR_NULL,
                "decision": {"oneOf": [{"type": "null"}, _ref("Decision")]}})
    period = _obj({"deployed_at": TIME, "until": TIME_OR_NULL, "decided_by": {"type": "string"},
                   "reason": STRING_OR_NULL, "run": HEX})
    model = _obj({"hex": HEX, "trained_at": TIME_OR_NULL, "train_rows": {"type": ["integer", "null"]},
                  "f1_score": NUMBER_OR_NULL, "trained_on": {"type": "string"}, "in_production": {"type": "boolean"},
                  "periods": {"type": "array", "items": _ref("Period")}})
    health_model = _obj({"hex": HEX, "f1_score": NUMBER_OR_NULL, "deployed_at": TIME_OR_NULL,
                         "train_rows": {"type": ["integer", "null"]}, "file": {"type": "string"}})
    record = _obj({f: {"type": ["number", "null"], "description": "a missing value is imputed"} for f in features},
                  extra=True)
    return {
        "Error": _obj({"error": {"type": "string", "minLength": 1}}),
        "Run": run, "Period": period, "Model": model, "Decision": _decision(),
        "Decisions": _obj({"data": {"type": "array", "items": _ref("Decision")}}),
        "FileRequest": _obj({"file_name": {"type": "string", "minLength": 1, "maxLength": MAX_FILE_NAME,
                                           "description": "a CSV inside the input, ingested or test data folder, "
                                                          "relative to the project, e.g. testdata/testdata.csv"}}),
        "RecordsRequest": _obj({"records": {"type": "array", "minItems": 1, "items": record}}),
        "Prediction": _obj({"data": {"type": "array", "items": {"type": "integer", "enum": [0, 1]}},
                            "probabilities": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
                            "model": HEX}),
        "Upload": _obj({"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "name": {"type": "string"},
                        "bytes": {"type": "integer", "minimum": 1}, "stored": {"type": "boolean"}}),
        "Scoring": _obj({"data": NUMBER_OR_NULL, "model": HEX}),
        "SummaryStats": _obj({"data": _rows(4, ["string", "number", "null"], "[feature, mean, median, std] rows"),
                              "model": HEX}),
        "Diagnostics": _obj({
            "missing_data": _rows(2, ["string", "number", "null"], "[column, fraction missing] rows"),
            "execution_time": _rows(2, ["string", "number", "null"], "[step, seconds] rows"),
            "outdated_packages": _rows(3, ["string", "null"], "[package, installed, latest] rows")}),
        "Runs": _obj({"data": {"type": "array", "items": _ref("Run")}}),
        "Models": _obj({"data": {"type": "array", "items": _ref("Model")}, "production": {"type": ["string", "null"]}}),
        "Health": _obj({"status": {"type": "string", "enum": ["ok", "degraded"]}, "database": {"const": "ok"},
                        "model": {"oneOf": [{"type": "null"}, health_model]},
                        "last_run": {"oneOf": [{"type": "null"}, _ref("Run")]}}),
        "HealthError": _obj({"status": {"const": "error"}, "database": {"type": "string"},
                             "error": {"type": "string", "minLength": 1}}),
        "OpenAPI": _obj({"openapi": {"type": "string", "pattern": "^3\\."},
                         "info": _obj({"title": {"type": "string"}, "version": {"type": "string"}}, extra=True),
                         "paths": _map(_map(_obj({"responses": _map(_obj({"description": {"type": "string"}},
                                                                             extra=True))}, extra=True)))},
                        extra=True),
    }


def _error(description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def _ok(description: str, media_type: str, schema: dict) -> dict:
    return {"200": {"description": description, "content": {media_type: {"schema": schema}}}}


def _binary(description: str, media_type: str) -> dict:
    return _ok(description, media_type, {"type": "string", "format": "binary"})


UPLOAD_NAME = r"^[^/\\\x00-\x1f\x7f-\x9f]*\.[cC][sS][vV]$"  # what inputs.upload_name accepts, near enough
BROWSER_PATHS = {"/", "/charts/{name}.png", "/report"}  # auth.BROWSER_ENDPOINTS: HTTP Basic too
UNAVAILABLE = "the database is unavailable (unreachable, or its file damaged)"
NO_MODEL = "no model is deployed yet, or the database is unavailable"


def _operations() -> dict:
    """path -> method -> (summary, responses without 401) of every route."""
    prediction = {
        **_ok("a label (1: predicted to exit) and a churn probability per row", JSON, _ref("Prediction")),
        "400": _error("malformed JSON or CSV, a missing or non-numeric feature, an unusable file_name"),
        "403": _error("file_name is outside the data folders"), "404": _error("no such data file"),
        "413": _error("the body, or the file named by file_name, is over max_request_mb"), "415": _error("neither JSON nor CSV"),
        "503": _error(NO_MODEL)}
    return {
        "/": {"get": ("the monitoring dashboard", {**_ok("the dashboard", "text/html", {"type": "string"}),
                                                    "503": _error(UNAVAILABLE)})},
        "/charts/{name}.png": {"get": ("a chart of the dashboard, drawn from the database",
                                       {**_binary("the PNG", "image/png"),
                                        "404": _error("no such chart (the confusion matrix: not before a report)"),
                                                                        "503": _error(UNAVAILABLE)})},
        "/prediction": {"post": ("predict churn for the rows of a data file, of JSON records or of a CSV body",
                                 prediction)},
        "/batches": {"post": ("store a CSV batch for the next tick (needs API_TOKEN set on the server)", {
            "201": {"description": "stored: the next tick ingests it", "content": {JSON: {"schema": _ref("Upload")}}},
            **_ok("these bytes were seen before (uploaded or read from the input folder): not stored again",
                  JSON, _ref("Upload")),
            "400": _error("a missing or bad name (1-255 printable characters ending .csv, no path separator), "
                          "or an empty body"),
            "403": _error("API_TOKEN is unset on the server: uploads are refused"),
            "413": _error("the body is over max_file_mb"), "415": _error("the body is not text/csv"),
            "503": _error(UNAVAILABLE)})},
        "/scoring": {"get": ("the production model's F1 on the held-out test data",
                             {**_ok("its F1", JSON, _ref("Scoring")), "503": _error(NO_MODEL)})},
        "/summarystats": {"get": ("mean, median and std of each feature of the production model's training data",
                                  {**_ok("[feature, mean, median, std] rows", JSON, _ref("SummaryStats")),
                                   "503": _error(NO_MODEL)})},
        "/diagnostics": {"get": ("missing data and step timings of the latest tick, and outdated packages",
                                 {**_ok("the latest diagnostics", JSON, _ref("Diagnostics")),
                                  "503": _error(UNAVAILABLE)})},
        "/runs": {"get": ("the runs of the pipeline, newest first",
                          {**_ok("the runs", JSON, _ref("Runs")), "400": _error("limit is not a positive integer"),
                           "503": _error(UNAVAILABLE)})},
        "/decisions": {"get": ("the decision records of ticks and deployments by hand, newest first",
                               {**_ok("the records", JSON, _ref("Decisions")),
                                "400": _error("limit is not a positive integer"), "503": _error(UNAVAILABLE)})},
        "/models": {"get": ("every recorded model: scores, training data and periods in production",
                            {**_ok("the models, newest first", JSON, _ref("Models")), "503": _error(UNAVAILABLE)})},
        "/report": {"get": ("the latest PDF report", {**_binary("the PDF", "application/pdf"),
                                                      "404": _error("no report yet"), "503": _error(UNAVAILABLE)})},
        "/apireturns": {"get": ("where a client writes its report of the API's answers (apireturns_path, relative)",
                                {**_ok("the path", TEXT, {"type": "string", "minLength": 1}),
                                 "503": _error(UNAVAILABLE)})},
        "/health": {"get": ("database and model state (needs no token)",
                            {**_ok("the database answers", JSON, _ref("Health")),
                             "503": {"description": UNAVAILABLE,
                                     "content": {JSON: {"schema": _ref("HealthError")}}}})},
        "/openapi.json": {"get": ("this document", {**_ok("the OpenAPI document", JSON, _ref("OpenAPI")),
                                                    "503": _error(UNAVAILABLE)})},
    }


def _parameters(path: str, features: tuple[str, ...]) -> list:
    if path in ("/runs", "/decisions"):
        return [{"name": "limit", "in": "query", "required": False, "description": "at most 500 are returned",
                 "schema": {"type": "integer", "minimum": 1, "default": 50}}]
    if path == "/batches":
        return [{"name": "name", "in": "query", "required": True, "description": "the batch's file name, e.g. 2026-12.csv",
                 "schema": {"type": "string", "minLength": 4, "maxLength": MAX_UPLOAD_NAME, "pattern": UPLOAD_NAME}}]
    if path == "/charts/{name}.png":
        return [{"name": "name", "in": "path", "required": True, "schema": {"type": "string",
                                                                             "enum": list(plots.chart_files(features))}},
                {"name": "v", "in": "query", "required": False, "description": "the data version: cached for a day",
                 "schema": {"type": "string"}}]
    return []


def _request_body(features: tuple[str, ...]) -> dict:
    header = ",".join(features)
    return {"required": True, "content": {
        JSON: {"schema": {"oneOf": [_ref("FileRequest"), _ref("RecordsRequest")]}},
        CSV: {"schema": {"type": "string", "minLength": 1}, "example": f"{header}\n12,150,20\n"}}}


# What gunicorn answers itself, before the app sees the request (gunicorn.conf.py makes them JSON too).
SERVER_ERRORS = {"414": _error("the request line (the URL) is longer than gunicorn's limit (4094 bytes)"),
                 "431": _error("more header fields than gunicorn's limit (100), or one longer than 8190 bytes")}


def document(features: tuple[str, ...], auth: bool) -> dict:
    """The OpenAPI document; with auth (API_TOKEN set) every operation but /health needs the token."""
    paths = {}
    for path, methods in _operations().items():
        paths[path] = {}
        for method, (summary, responses) in methods.items():
            operation = {"summary": summary, "operationId": re.sub(r"\W+", "_", f"{method}{path}").strip("_"),
                         "responses": dict(responses)}
            if parameters := _parameters(path, features):
                operation["parameters"] = parameters
            if path == "/prediction":
                operation["requestBody"] = _request_body(features)
            if path == "/batches":
                # Any bytes are an upload (no "type"): a body that is not a usable CSV is stored, and the tick
                # quarantines it as it would a file of the folder.
                operation["requestBody"] = {"required": True, "content": {CSV: {
                    "schema": {"minLength": 1, "description": "the batch's bytes, a CSV file as the input folder holds"},
                    "example": f"corporation,{','.join(features)},exited\nabcd,12,150,20,0\n"}}}
            if auth and path != "/health":
                operation["security"] = [{"bearer": []}, {"basic": []}] if path in BROWSER_PATHS else [{"bearer": []}]
                operation["responses"]["401"] = {**_error("the API token is missing or wrong"), "headers": {
                    "WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}}
            operation["responses"].update(SERVER_ERRORS)
            paths[path][method] = operation
    components = {"schemas": _schemas(features)}
    if auth:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                         "basic": {"type": "http", "scheme": "basic",
                                                   "description": "any user name, the token as password"}}
    return {"openapi": "3.1.0", "info": {"title": "Churn risk assessment API", "version": "1"},
            "paths": paths, "components": components}


