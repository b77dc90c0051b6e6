"""Property-based fuzzing of every route from the OpenAPI document (schemathesis).

Each operation gets a bounded number of generated requests, valid ones and invalid ones. No answer
may be a 5xx, and every answer must match what the document says the route answers. Generation
is derandomized, so a run is repeatable and a failure shows up on every run until it is fixed.
"""

from __future__ import annotations

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.servers import ApiServer

EXAMPLES = 25
"""Per operation and mode; about a minute for the whole API on 2 cores."""


def test_no_route_answers_5xx_or_off_schema(api: ApiServer, key: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/schema/openapi.json")
    auth = {"Authorization": f"Bearer {key}"}
    failures: dict[str, str] = {}
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in GenerationMode:

                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case: schemathesis.Case) -> None:
                    # A schema-valid body need not be a CSV file: 415/422 for it is right, not a failure.
                    case.call_and_validate(headers=auth, session=session, excluded_checks=[positive_data_acceptance])

                try:
                    run()
                except Unsatisfiable:
                    continue  # no parameter to make invalid (GET /health has none)
                except (Exception, FailureGroup) as exc:  # noqa: BLE001 - try every operation, then show all failures
                    failures[f"{operation.label} [{mode}]"] = str(exc)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
