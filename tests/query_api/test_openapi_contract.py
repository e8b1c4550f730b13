"""The OpenAPI document is the frontend's contract: every parameter and response is described and has an
example, and what the gateway really answers validates against the documented models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from gateway import schemas
from gateway.app import create_app
from meterdata.settings import Settings
from tests.query_api.helpers import IMPORT_MUID, Stack, readings_path, series_path

EXPECTED_ROUTES = {
    ("get", "/api/v1/meters"),
    ("get", "/api/v1/meters/{muid}"),
    ("get", "/api/v1/meters/{muid}/readings"),
    ("get", "/api/v1/meters/{muid}/series"),
    ("post", "/api/v1/ingest/runs"),
    ("get", "/api/v1/ingest/runs"),
    ("get", "/api/v1/ingest/runs/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_every_route_is_documented(document: dict[str, Any]) -> None:
    assert {(method, path) for method, path, _ in operations(document)} >= EXPECTED_ROUTES
    assert document["info"]["description"] and document["info"]["version"]
    for _, _, operation in operations(document):
        assert operation["summary"] and operation["description"]


def test_every_parameter_has_a_description_and_an_example(document: dict[str, Any]) -> None:
    checked = 0
    for method, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            where = f"{method.upper()} {path} {parameter['name']}"
            assert parameter.get("description"), where
            assert "example" in parameter, where
            assert parameter["schema"].get("examples"), where
            checked += 1
    assert checked >= 30


def test_every_response_and_body_has_an_example(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            where = f"{method.upper()} {path} {status}"
            assert response.get("description"), where
            assert response.get("content"), where
            for media_type, media in response["content"].items():
                assert "example" in media, f"{where} {media_type}"
        body = operation.get("requestBody")
        if body:
            assert "example" in body["content"]["application/json"], path


def test_errors_are_documented_as_problem_json_not_422(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        assert "422" not in operation["responses"], path
        for status, response in operation["responses"].items():
            if int(status) >= 400 and path.startswith("/api/"):
                assert list(response["content"]) == ["application/problem+json"], (method, path, status)
    series = document["paths"]["/api/v1/meters/{muid}/series"]["get"]
    assert {"200", "400", "404", "503", "504"} <= set(series["responses"])
    assert "text/csv" in series["responses"]["200"]["content"]


def test_served_document_and_docs_page(stack: Stack, document: dict[str, Any]) -> None:
    served = stack.json("/openapi.json")
    assert served["paths"].keys() == document["paths"].keys()
    page = stack.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()


def test_real_answers_validate_against_the_documented_models(stack: Stack) -> None:
    cases: list[tuple[type[BaseModel], str, dict[str, Any]]] = [
        (schemas.MeterList, "/api/v1/meters", {}),
        (schemas.MeterDetail, f"/api/v1/meters/{IMPORT_MUID}", {}),
        (schemas.ReadingPage, readings_path(IMPORT_MUID), {"limit": 3}),
        (schemas.Series, series_path(IMPORT_MUID), {"interval": "day"}),
        (schemas.Problem, series_path(IMPORT_MUID), {"tz": "Nowhere"}),
        (schemas.Problem, f"/api/v1/meters/{IMPORT_MUID[:-1]}0", {}),
        (schemas.Health, "/healthz", {}),
        (schemas.Readiness, "/readyz", {}),
    ]
    for model, path, params in cases:
        body = stack.get(path, **params).json()
        model.model_validate(body, strict=False)
        assert set(body) <= set(model.model_fields), (path, set(body) - set(model.model_fields))


@pytest.mark.parametrize(
    "model",
    [
        schemas.MeterList,
        schemas.MeterDetail,
        schemas.ReadingPage,
        schemas.Series,
        schemas.IngestRunDetail,
        schemas.Problem,
    ],
)
def test_documented_examples_validate_against_their_models(model: type[BaseModel]) -> None:
    for example in model.model_json_schema()["examples"]:
        model.model_validate(example)
