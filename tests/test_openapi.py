"""GET /openapi.json: the document and the app's routes agree, and the app's answers match it."""

import re

import jsonschema_rs
import pytest
from conftest import offline
from servers import RECORD, deploy

from riskmonitor.web.app import create_app

AUTOMATIC = {"HEAD", "OPTIONS"}  # Flask answers these for every GET route by itself


@pytest.fixture
def app(project):
    app = create_app(project)
    yield app
    app.extensions["drat"]["engine"].dispose()


def routes(app) -> set[tuple[str, str]]:
    """(path in OpenAPI's spelling, method) of every route of the app."""
    return {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
            for rule in app.url_map.iter_rules() for method in rule.methods - AUTOMATIC}


def documented(document: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, methods in document["paths"].items() for method in methods}


def schemas_in(node):
    """Every JSON schema object nested in a part of the document."""
    if isinstance(node, dict):
        if "type" in node or "$ref" in node or "oneOf" in node or "const" in node:
            yield node
        for value in node.values():
            yield from schemas_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from schemas_in(value)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("token", ["", "a-token"])
def test_the_document_and_the_routes_agree(project, monkeypatch, token):
    monkeypatch.setenv("API_TOKEN", token)
    app = create_app(project)
    client = app.test_client()
    document = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).json
    app.extensions["drat"]["engine"].dispose()
    assert document["openapi"].startswith("3.")
    assert routes(app) == documented(document)
    assert len(documented(document)) >= 12
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            assert "default" not in responses, (path, method)
            assert all(re.fullmatch(r"[1-5]\d\d", status) for status in responses)
            assert ("401" in responses) == bool(token and path != "/health"), (path, method)
            assert ("security" in operation) == ("401" in responses)
            for status, response in responses.items():
                for media_type, content in response["content"].items():
                    assert content["schema"], (path, method, status, media_type)  # never an empty schema
    for schema in schemas_in(document):
        if schema.get("type") == "object":  # fields it must have, or a map of values that are described
            if "required" in schema:
                assert set(schema["required"]) <= set(schema["properties"])
                assert schema["required"]
            else:
                assert schema["minProperties"] >= 1
                assert schema["additionalProperties"]["type"]
    assert all(schema["required"] for schema in document["components"]["schemas"].values())


def validate(document: dict, path: str, method: str, response) -> None:
    """The response's status is documented for the operation and its JSON body matches the schema."""
    responses = document["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, (path, method, response.status_code, response.get_data()[:200])
    content = responses[str(response.status_code)]["content"]
    assert response.mimetype in content, (path, response.mimetype)
    if response.is_json:
        schema = {**content[response.mimetype]["schema"], "components": document["components"]}
        jsonschema_rs.Draft202012Validator(schema, validate_formats=True).validate(response.json)


def test_answers_match_the_document(app, project, engine, monkeypatch):
    client = app.test_client()
    document = client.get("/openapi.json").json
    calls = [("/health", "get", {}), ("/scoring", "get", {}), ("/summarystats", "get", {}),
             ("/diagnostics", "get", {}), ("/runs", "get", {}), ("/models", "get", {}), ("/report", "get", {}),
             ("/apireturns", "get", {}), ("/prediction", "post", {"json": {"records": [RECORD]}}),
             ("/prediction", "post", {"json": {"file_name": "../config.json"}}),
             ("/prediction", "post", {"json": {"file_name": "config.json"}}),
             ("/prediction", "post", {"data": "x", "content_type": "text/plain"}),
             ("/openapi.json", "get", {}), ("/", "get", {})]
    for before_and_after in range(2):
        for path, method, arguments in calls:
            with client.open(path, method=method.upper(), **arguments) as response:
                validate(document, path, method, response)
        with client.get("/runs?limit=0") as response:
            validate(document, "/runs", "get", response)
        if not before_and_after:
            offline(monkeypatch)
            deploy(project, engine)
