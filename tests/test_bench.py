"""`python -m boneage.bench`: it measures what the issue asks and writes it down."""

from __future__ import annotations

import json

import pytest

from boneage.bench import loader_row
from tests.helpers import run_cli


@pytest.mark.slow
def test_bench_quick_mode_prints_its_tables_and_writes_json(tmp_path):
    own_data = tmp_path / "data"  # the bench generates its own demo sizes; keep them out of the shared data
    result = run_cli(["bench=quick", f"hydra.run.dir={tmp_path / 'bench'}"], tmp_path, own_data, app="boneage.bench")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert {row["pipeline"] for row in results["loader"]} == {"cold", "cached"}
    assert all(row["images_per_s"] > 0 for row in results["loader"])
    per_core = {row["image_size"]: row["images_per_s_per_core"] for row in results["loader"] if row["workers"] == 0}
    assert set(per_core) == {32, 48}  # the bench size and bench.loader_sizes
    low, high = (float(rate) for rate in results["loader"][0]["spread"].split("-"))
    assert low <= results["loader"][0]["images_per_s"] <= high  # the median of the repeats lies in their spread
    assert results["mode"] == "quick" and results["overhead"]["ratio"] > 0 and results["overhead"]["plain_epoch_s"] > 0
    assert results["models"][0]["parameters_m"] > 0 and results["models"][0]["gflops"] > 0
    assert results["first_step"]["seconds"] > 0
    serving = results["serving"]
    assert serving["requests"] == 40 and serving["errors"] == 0 and 0 < serving["p50_ms"] <= serving["p95_ms"]
    assert [target["target"] for target in results["targets"]] == [
        "cached loader / cold loader",
        "cached loader: one worker / in the training process",
        "boneage epoch / plain PyTorch epoch",
        "classification: boneage epoch / plain PyTorch epoch",
        "cached loader / training throughput",
        "DICOM node: seconds per image, received to report stored",
    ]
    pacs = results["pacs"]
    assert pacs["images"] == 5 and 0 < pacs["first_image_s"] <= pacs["max_s_in_queue"]
    classification = results["classification"]
    assert classification["classes"] == 10 and classification["ratio"] > 0 and classification["plain_epoch_s"] > 0
    for title in (
        "Loader throughput",
        "Framework overhead",
        "Models",
        "Time to the first training step",
        "Serving",
        "DICOM node",
        "Targets",
    ):
        assert title in result.stdout


@pytest.mark.parametrize("rates", [[246.04, 246.06], [99.96, 100.04, 100.2], [3.0, 3.0]])
def test_a_loader_settings_median_lies_inside_the_spread_printed_beside_it(rates):
    """Two repeats of 246.04 and 246.06 images/s have the median 246.05: printed as 246.1 beside a
    spread rounded to whole images, "246-246", it lay outside its own spread."""
    row = loader_row(cache=True, workers=2, size=32, clahe=False, rates=rates)
    low, high = (float(rate) for rate in row["spread"].split("-"))
    assert low <= row["images_per_s"] <= high
    assert row["images_per_s_per_core"] == pytest.approx(row["images_per_s"] / 2, abs=0.05)
