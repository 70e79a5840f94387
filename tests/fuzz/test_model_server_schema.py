"""The model server fuzzed by schemathesis from its own /openapi.json: valid and invalid bodies
for every operation, sent over real HTTP to the app served by uvicorn as `serve-models` runs
it, with instant stand-ins for the models. No request may get a 5xx, and every answer must
match the documented status codes and schemas."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.case import Case
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from services.modelhost.batched import BatchedSentimentAnalyzer
from services.modelhost.server import ModelHost, build_model_app
from tests.fakes.embedder import FakeEmbedder
from tests.fakes.models import FakeImageGenerator, FakeSentimentModel
from tests.fakes.text import FakeTextGenerator
from tests.fuzz.conftest import ErrorTrap

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _host() -> ModelHost:
    return ModelHost(
        text=FakeTextGenerator(context_window=8192),
        embeddings=FakeEmbedder(),
        # The batcher as serve-models wraps the classifier, so "busy" and threads are real.
        sentiment=BatchedSentimentAnalyzer(FakeSentimentModel(), max_wait_ms=0),
        images=FakeImageGenerator(),
        image_size="64x64",
    )


@pytest.fixture(scope="module")
def model_server() -> Iterator[str]:
    """The model app under uvicorn in a thread of its own (schemathesis calls it
    synchronously); yields its base URL."""
    config = uvicorn.Config(
        build_model_app(_host()), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the model server did not start")
        threading.Event().wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


# How invalid bodies may be refused: schemathesis' default list, plus 413 for a body over the
# server's size cap (a generated string can be megabytes long).
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]


@pytest.fixture(scope="module")
def model_api(model_server: str) -> BaseSchema:
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
    )
    return schemathesis.openapi.from_url(f"{model_server}/openapi.json", config=config)


# schemathesis' own pytest integration (from_fixture) does not run under pytest 9, so its
# strategies are driven by Hypothesis directly: every operation, valid and invalid bodies.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_model_api_holds_to_its_spec(
    model_api: BaseSchema, trap: ErrorTrap, mode: GenerationMode
) -> None:
    @given(case=model_api.as_strategy(mode))
    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: Case) -> None:
        case.call_and_validate(checks=CHECKS)
        # The server runs in this process: a failure it only logged shows here.
        trap.check()

    check()
