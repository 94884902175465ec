"""A served run against hostile uploads: decompression bombs, a fuzz of its own OpenAPI schema, and
an exposed host without a key. Each runs against `python -m boneage.serve` in its own process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from boneage.config.errors import ConfigError
from boneage.serve import check_exposure
from boneage.serving.load_test import served
from tests.dicom_files import deflated_at, png_bomb, write_dicom_bomb
from tests.helpers import cli_environment, compose_app, write_run
from tests.test_serve import NO_VALIDATION, png

PEAK_MEMORY_MB = 2500  # README: the server's peak memory under 16 concurrent uploads at max_pixels
FUZZ_EXAMPLES = 30  # per operation and generation mode: bounded, about a minute in all


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("hostile")
    run = write_run(root / "run")
    with served([f"run={run}", *NO_VALIDATION], root, cli_environment(data_dir)) as started:
        yield started


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory so far (the kernel's high-water mark)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


async def upload_all(url: str, uploads: list[tuple[str, bytes]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=300) as http:
        return await asyncio.gather(*(http.post(f"{url}/predict", files={"file": upload}) for upload in uploads))


@pytest.mark.slow
def test_bombs_are_refused_from_the_header_and_uploads_at_the_limit_stay_in_bounded_memory(server, tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png", side=20000).read_bytes()  # 400 MP, 0.8 MB: under max_upload_mb
    dicom_bomb = write_dicom_bomb(tmp_path / "bomb.dcm").read_bytes()  # claims 900 MP
    refused = asyncio.run(upload_all(server.url, [(f"b{i}.png", bomb) for i in range(15)] + [("b.dcm", dicom_bomb)]))
    assert [answer.status_code for answer in refused] == [413] * 16
    assert "too large" in refused[0].json()["error"] and refused[0].json()["send"]
    assert "900,000,000 pixels" in refused[-1].json()["error"]

    png_at_limit = png_bomb(tmp_path / "limit.png", side=7000).read_bytes()  # 49 MP: under max_pixels, decoded
    dicom_at_limit = deflated_at(tmp_path / "limit.dcm", side=7000).read_bytes()  # inflated, rescaled, windowed
    uploads = [(f"l{i}.png", png_at_limit) for i in range(8)] + [(f"l{i}.dcm", dicom_at_limit) for i in range(8)]
    answered = asyncio.run(upload_all(server.url, uploads))
    assert [answer.status_code for answer in answered] == [200] * 16
    peak = peak_memory_mb(server.pid)
    print(f"server peak memory: {peak:.0f} MB")  # the README's figure is measured by this line
    assert peak < PEAK_MEMORY_MB
    assert httpx.post(f"{server.url}/predict", files={"file": ("hand.png", png())}).status_code == 200


def server_errors(url: str, operation, mode: GenerationMode) -> list[str]:
    """What a bounded fuzz of one operation in one generation mode got back as 5xx."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def call(case) -> None:
        response = case.call(base_url=url, timeout=60)
        if response.status_code >= 500:
            failures.append(f"{operation.label} ({mode.value}): {response.status_code} {response.text[:200]}")

    try:
        call()
    except Unsatisfiable:  # nothing to malform: an operation without parameters has no negative cases
        assert mode == GenerationMode.NEGATIVE and not list(operation.iter_parameters()) and not operation.body
    return failures


@pytest.mark.slow
def test_a_fuzz_of_the_served_schema_never_gets_a_5xx_and_the_server_goes_on(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"POST /predict", "POST /predict/batch", "GET /model"} <= {operation.label for operation in operations}
    failures = [failure for operation in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                for failure in server_errors(server.url, operation, mode)]  # fmt: skip
    assert failures == []
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    answer = httpx.post(f"{server.url}/predict", files={"file": ("hand.png", png())})
    assert answer.status_code == 200 and "predicted_age" in answer.json()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "scanner.hospital.example"])
def test_a_host_other_machines_reach_needs_an_api_key_or_an_explicit_opt_out(host):
    with pytest.raises(ConfigError, match=r"api_key=<a long random secret>.*allow_unauthenticated=true"):
        check_exposure(compose_app("serve", ["run=x", f"host={host}"]))
    check_exposure(compose_app("serve", ["run=x", f"host={host}", "api_key=s3cret"]))
    check_exposure(compose_app("serve", ["run=x", f"host={host}", "allow_unauthenticated=true"]))
    for loopback in ("127.0.0.1", "localhost", "::1"):
        check_exposure(compose_app("serve", ["run=x", f"host={loopback}"]))


@pytest.mark.slow
def test_with_an_api_key_the_api_answers_only_the_bearer_of_it(tmp_path, data_dir):
    run = write_run(tmp_path / "run")
    key = "correct horse battery staple"
    with served([f"run={run}", f"api_key='{key}'", *NO_VALIDATION], tmp_path, cli_environment(data_dir)) as keyed:
        image = {"file": ("hand.png", png())}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {key}"}):
            refused = httpx.post(f"{keyed.url}/predict", files=image, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["send"] == "the header Authorization: Bearer <the server's api_key>"
        assert httpx.get(f"{keyed.url}/model").status_code == 401
        bearer = {"Authorization": f"Bearer {key}"}
        assert httpx.post(f"{keyed.url}/predict", files=image, headers=bearer).status_code == 200
        assert httpx.get(f"{keyed.url}/model", headers=bearer).status_code == 200
        assert httpx.get(f"{keyed.url}/health").status_code == 200  # liveness stays open for load balancers
        spec = httpx.get(f"{keyed.url}/openapi.json").json()
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
