"""Property-based fuzzing of every route from the OpenAPI document (schemathesis).

Each operation gets a bounded number of generated requests, valid ones and invalid ones. No answer
may be a 5xx, and every answer must match what the document says the route answers. Generation
is derandomized, so a run is repeatable and a failure shows up on every run until it is fixed.
"""

from __future__ import annotations

from collections.abc import Callable

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.config._checks import MissingRequiredHeaderConfig, NegativeDataRejectionConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.servers import ApiServer

EXAMPLES = 25
"""Per operation and mode; about a minute for the whole API on 2 cores."""


# tus PATCH bodies are raw bytes under tus's own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
TUS_REFUSALS = ["410", "412", "460"]
"""tus's own answers to requests it refuses: gone, a missing or foreign Tus-Resumable, a checksum mismatch."""


def _load(url: str) -> BaseSchema:
    schema = schemathesis.openapi.from_url(url)
    checks = schema.config.checks
    checks.negative_data_rejection = NegativeDataRejectionConfig(
        expected_statuses=[*checks.negative_data_rejection.expected_statuses, *TUS_REFUSALS]
    )
    checks.missing_required_header = MissingRequiredHeaderConfig(
        expected_statuses=[*checks.missing_required_header.expected_statuses, *TUS_REFUSALS]
    )
    return schema


def test_no_route_answers_5xx_or_off_schema(api: ApiServer, key: str) -> None:
    schema = _load(f"{api.url}/schema/openapi.json")
    failures = _fuzz(schema, {"Authorization": f"Bearer {key}"})
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_tus_routes_on_live_uploads_answer_no_5xx_or_off_schema(api: ApiServer, key: str) -> None:
    """Random ids only reach the 404s: here every request goes to a real upload (a fresh one per
    operation and mode, as requests end it: terminated, refused, complete)."""
    schema = _load(f"{api.url}/schema/openapi.json").include(path_regex="^/api/v1/tus")
    auth = {"Authorization": f"Bearer {key}"}

    def live_upload(case: schemathesis.Case) -> None:
        if case.path_parameters and "upload_id" in case.path_parameters:
            case.path_parameters["upload_id"] = upload

    failures: dict[str, str] = {}
    with requests.Session() as session:
        for mode in GenerationMode:
            created = session.post(
                f"{api.url}/api/v1/tus/", headers={**auth, "Tus-Resumable": "1.0.0", "Upload-Length": "5000"}
            )
            assert created.status_code == 201, created.text
            upload = created.headers["Location"].rsplit("/", 1)[1]
            failures |= _fuzz(schema, auth, prepare=live_upload, modes=[mode])
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def _fuzz(
    schema: BaseSchema,
    auth: dict[str, str],
    *,
    prepare: Callable[[schemathesis.Case], None] | None = None,
    modes: list[GenerationMode] | None = None,
) -> dict[str, str]:
    """Every operation of ``schema`` in each mode; what failed, by operation and mode."""
    failures: dict[str, str] = {}
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in modes or list(GenerationMode):

                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case: schemathesis.Case) -> None:
                    if prepare is not None:
                        prepare(case)
                    # A schema-valid body need not be a CSV file: 415/422 for it is right, not a failure.
                    case.call_and_validate(headers=auth, session=session, excluded_checks=[positive_data_acceptance])

                try:
                    run()
                except Unsatisfiable:
                    continue  # no parameter to make invalid (GET /health has none)
                except (Exception, FailureGroup) as exc:  # noqa: BLE001 - try every operation, then show all failures
                    failures[f"{operation.label} [{mode}]"] = str(exc)
    return failures
