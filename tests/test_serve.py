"""boneage.serve: the API (FastAPI's test client), bad input, batching, a bounded load test,
and the web page in a real headless Chromium."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from boneage.evaluation.inference import load_run
from boneage.serve import build_app
from boneage.serving.load_test import load_test, served
from tests.browser import headless_chromium, needs_chromium, screenshot
from tests.helpers import cli_environment, compose_app, write_run

NO_VALIDATION = ["interval=null", "ood_quantile=null"]  # these runs have no validation subjects to fit intervals on


def png(size: int = 48, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served")
    return {
        "plain": write_run(root / "plain"),
        "sex": write_run(root / "sex", ["data.extra_inputs=[sex]"]),
        "quality": write_run(root / "quality", ["data.extra_inputs=[quality]"]),  # a table input other than sex
    }


@pytest.fixture(scope="module")
def client(runs):
    app = build_app(compose_app("serve", [f"run={runs['plain']}", "max_upload_mb=0.01", *NO_VALIDATION]))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_predict_answers_with_the_runs_prediction_and_identity(client, runs, tmp_path):
    image = png()
    answer = client.post("/predict", files={"file": ("hand.png", image)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (tmp_path / "hand.png").write_bytes(image)
    expected = load_run(runs["plain"]).predict(pd.DataFrame({"image": [str(tmp_path / "hand.png")]}))[0]
    assert body["predicted_age"] == pytest.approx(float(expected), abs=1e-4)
    assert body["unit"] == "years" and body["image"] == "hand.png"
    assert body["model"]["runs"] == [load_run(runs["plain"]).name] and body["model"]["checkpoints"] == ["last.ckpt"]
    assert len(body["model"]["config_hash"][0]) == 12


def test_health_model_openapi_and_the_page(client):
    assert client.get("/health").json() == {"status": "ok"}
    model = client.get("/model").json()
    assert model["unit"] == "years" and model["inputs"] == []
    assert {"/predict", "/predict/batch", "/health", "/model"} <= set(client.get("/openapi.json").json()["paths"])
    page = client.get("/").text
    assert 'id="file"' in page and "http" not in page.split("<script>")[1]  # no CDN: every asset is in the page


@pytest.mark.parametrize(
    ("files", "status", "error"),
    [
        ({"file": ("notes.png", b"just text")}, 415, "notes.png cannot be read as an image"),
        ({"file": ("cut.png", png()[:300])}, 415, "cut.png cannot be read as an image"),
        ({"file": ("empty.png", b"")}, 400, "empty.png is empty"),
        ({"file": ("huge.png", png(size=400, seed=1))}, 413, "huge.png is larger than 0.01 MB"),
        ({"image": ("hand.png", b"x")}, 422, "no image in the request"),
    ],
)
def test_bad_uploads_get_a_4xx_that_says_what_to_send_and_the_server_goes_on(client, files, status, error):
    answer = client.post("/predict", files=files)
    assert answer.status_code == status
    assert answer.json()["error"].startswith(error) and answer.json()["send"]
    assert client.post("/predict", files={"file": ("hand.png", png())}).status_code == 200  # still serving


def test_batch_predicts_the_good_images_and_names_the_bad_one(client):
    files = [("files", ("a.png", png(seed=1))), ("files", ("bad.png", b"nope")), ("files", ("b.png", png(seed=2)))]
    answer = client.post("/predict/batch", files=files).json()
    assert [p["image"] for p in answer["predictions"]] == ["a.png", "bad.png", "b.png"]
    assert "predicted_age" in answer["predictions"][0] and "predicted_age" in answer["predictions"][2]
    assert answer["predictions"][1]["error"].startswith("bad.png cannot be read")


def test_a_model_with_sex_as_input_needs_it_and_refuses_unknown_codes(runs):
    app = build_app(compose_app("serve", [f"run={runs['sex']}", *NO_VALIDATION]))
    with TestClient(app) as sexed:
        assert sexed.get("/model").json()["inputs"] == ["sex"]
        missing = sexed.post("/predict", files={"file": ("h.png", png())})
        assert missing.status_code == 422 and missing.json()["send"] == "the form field sex=F or sex=M"
        unknown = sexed.post("/predict", files={"file": ("h.png", png())}, data={"sex": "x"})
        assert unknown.status_code == 422 and "unknown sex code 'x'" in unknown.json()["error"]
        girl = sexed.post("/predict", files={"file": ("h.png", png())}, data={"sex": "female"}).json()["predicted_age"]
        boy = sexed.post("/predict", files={"file": ("h.png", png())}, data={"sex": "M"}).json()["predicted_age"]
        assert girl != boy


def test_a_batch_passes_every_table_input_the_model_takes_once_for_all_or_once_per_image(runs):
    app = build_app(compose_app("serve", [f"run={runs['quality']}", *NO_VALIDATION]))
    files = [("files", (f"h{seed}.png", png(seed=seed))) for seed in (1, 2)]
    with TestClient(app) as client:
        per_image = client.post("/predict/batch", files=files, data={"quality": ["10", "90"]}).json()["predictions"]
        once = client.post("/predict/batch", files=files, data={"quality": "10"}).json()["predictions"]
        alone = client.post("/predict", files={"file": ("h2.png", png(seed=2))}, data={"quality": "90"}).json()
        missing = client.post("/predict/batch", files=files).json()["predictions"]
    assert [answer.get("error") for answer in per_image + once] == [None] * 4
    assert per_image[1]["predicted_age"] == pytest.approx(alone["predicted_age"], abs=1e-5)
    assert per_image[0]["predicted_age"] == pytest.approx(once[0]["predicted_age"], abs=1e-5)
    assert [answer["error"] for answer in missing] == ["this model needs 'quality' beside the image"] * 2


def test_concurrent_requests_share_batches(runs):
    app = build_app(compose_app("serve", [f"run={runs['plain']}", "max_wait_ms=200", *NO_VALIDATION]))

    async def eight_at_once() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as http,
        ):
            answers = await asyncio.gather(
                *(http.post("/predict", files={"file": ("h.png", png(seed=i))}) for i in range(8))
            )
            return [a.status_code for a in answers] + [(await http.get("/model")).json()["batches"]["largest"]]

    *statuses, largest = asyncio.run(eight_at_once())
    assert statuses == [200] * 8
    assert largest > 1  # at least two requests ran through the network together


@pytest.fixture(scope="module")
def server(runs, data_dir, tmp_path_factory):
    """`python -m boneage.serve` in its own process, as a user starts it."""
    with served(
        [f"run={runs['plain']}", *NO_VALIDATION], tmp_path_factory.mktemp("serve"), cli_environment(data_dir)
    ) as served_run:
        yield served_run.url


@pytest.mark.slow
def test_bounded_load_test_has_no_errors(server):
    figures = load_test(server, png(), requests=64, concurrency=8)
    assert figures["errors"] == 0, figures["first_errors"]
    assert 0 < figures["p50_ms"] <= figures["p95_ms"]
    assert httpx.get(f"{server}/model").json()["batches"]["largest"] > 1


# The page's visible blocks, each as the box it is drawn in; `pieces`: how many boxes the browser
# draws for it (an inline element wraps its padding and border around each of its lines).
BLOCKS = "#model, #key-row, #drop, #sex-row, #predict, #preview, #result .head, #result .flag, #error"
BOXES = f"""return [...document.querySelectorAll('{BLOCKS}')]
  .filter((e) => e.getClientRects().length && e.getBoundingClientRect().height > 0)
  .map((e) => {{ const r = e.getBoundingClientRect();
    return {{name: e.id || e.dataset.head || e.className, pieces: e.getClientRects().length,
             left: r.left, top: r.top, right: r.right, bottom: r.bottom}}; }});"""


def assert_laid_out(page: Any, artefact: str) -> None:
    """Every block of the page is one box, no two overlap, and the page is kept as a screenshot."""
    screenshot(page, artefact)
    boxes = page.execute_script(BOXES)
    assert {"model", "drop", "predict"} <= {box["name"] for box in boxes}
    for box in boxes:
        assert box["pieces"] == 1, f"{box['name']} is drawn as {box['pieces']} boxes"
    for one, other in itertools.combinations(boxes, 2):
        apart = (one["right"] <= other["left"] or other["right"] <= one["left"] or one["bottom"] <= other["top"]
                 or other["bottom"] <= one["top"])  # fmt: skip
        assert apart, f"{one['name']} and {other['name']} overlap: {one} {other}"


def first_assessed(url: str, images: pd.Series) -> tuple[Path, dict[str, Any]]:
    """The first of `images` the served model assesses, and its answer: a tiny model's gate may
    refuse any one test hand, and which one can change with the threads that trained it."""
    for name in images:
        image = Path(name)
        answer = httpx.post(f"{url}/predict", files={"file": (image.name, image.read_bytes())}).json()
        if answer.get("assessed", True):
            return image, answer
    raise AssertionError(f"the model refused every one of {len(images)} test hands")


@contextmanager
def page_with_answer(url: str, image: Path, model_text: str, result_ready: tuple[str, str]) -> Iterator[Any]:
    """The served page in headless Chromium once `image` is chosen and predicted: it waits for the
    model line to say `model_text`, then for the element `result_ready` (By, selector) to appear."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as browser:
        browser.get(url)
        WebDriverWait(browser, 20).until(
            expected_conditions.text_to_be_present_in_element((By.ID, "model"), model_text)
        )
        browser.find_element(By.ID, "file").send_keys(str(image))
        browser.find_element(By.ID, "predict").click()
        WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located(result_ready))
        yield browser


@pytest.mark.slow
@needs_chromium
def test_the_page_in_headless_chromium_shows_the_predicted_age(server, tmp_path):
    from selenium.webdriver.common.by import By

    image = tmp_path / "hand.png"
    image.write_bytes(png(seed=5))
    expected = httpx.post(f"{server}/predict", files={"file": ("hand.png", image.read_bytes())}).json()["predicted_age"]
    with page_with_answer(
        server, image, "age in years", (By.XPATH, "//div[@id='result'][contains(., 'Predicted age')]")
    ) as page:
        shown = page.find_element(By.ID, "result").text
        assert_laid_out(page, "page-age")
    assert shown == f"Predicted age: {expected:.2f} years"


# The demo's four stages, and eight more declared that no image has: a head of twelve classes.
TWELVE_CLASSES = ["infant", "child", "adolescent", "mature", *(f"stage{index}" for index in range(5, 13))]
SECTIONS = """return [...document.querySelectorAll('#result .head')].map((section) => ({
  head: section.dataset.head, title: section.querySelector('h2').textContent,
  summary: section.querySelector('p').textContent,
  bars: [...section.querySelectorAll('.bar')].map((bar) => bar.dataset.class)}));"""


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("overrides", [
    ["experiment=demo_classify", f"task.classes=[{','.join(TWELVE_CLASSES)}]"],  # more than 10: the 5 most probable
    ["experiment=demo_multitask"],  # a stage of 4 classes (every one), a score and an age
], ids=["12-class classifier", "multi-task"])  # fmt: skip
def test_the_page_shows_each_head_its_class_with_bars_and_set_or_its_value_with_interval(overrides, tmp_path, data_dir):
    from selenium.webdriver.common.by import By

    run = write_run(tmp_path / "run", overrides)
    with served([f"run={run}"], tmp_path, cli_environment(data_dir)) as server:
        image, answer = first_assessed(server.url, pd.read_csv(run / "splits.csv").query("set == 'test'")["image"])
        described = httpx.get(f"{server.url}/model").json()["heads"]
        heads = answer.get("heads") or {next(iter(described)): answer}  # a model of one head answers flat
        last = f"//section[@data-head='{list(heads)[-1]}']"
        with page_with_answer(server.url, image, "predicts", (By.XPATH, last)) as page:
            shown = page.execute_script(SECTIONS)
            assert_laid_out(page, f"page-{'-'.join(heads)}")
    assert [section["head"] for section in shown] == list(heads)
    for section in shown:
        name, head = section["head"], heads[section["head"]]
        unit = f" {described[name]['unit']}" if described[name]["unit"] else ""
        if described[name]["kind"] == "classification":
            assert section["title"] == f"Predicted {name}: {head['class']} ({head['probability'] * 100:.1f}%)"
            ranked = sorted(head["probabilities"], key=head["probabilities"].get, reverse=True)
            assert section["bars"] == (ranked if len(ranked) <= 10 else ranked[:5])  # the most probable first
            shown = f" (the 5 most probable of {len(ranked)} classes below)" if len(ranked) > 10 else ""
            assert section["summary"] == f"90% prediction set: {', '.join(map(str, head['set']['classes']))}{shown}"
        else:
            interval, value = head["interval"], head[f"predicted_{name}"]
            assert section["title"] == f"Predicted {name}: {value:.2f}{unit}" and section["bars"] == []
            assert section["summary"] == f"90% interval {interval['lower']:.2f}–{interval['upper']:.2f}{unit}"
            low, high = described[name].get("range") or (None, None)
            assert low is None or low <= interval["lower"] <= value  # within the head's declared range
            assert high is None or value <= interval["upper"] <= high
