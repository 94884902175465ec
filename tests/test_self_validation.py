"""Self-validation: the header stage on other tools' DICOM files, each method's threshold on
features it was not fitted on, the gate stored in an export, and the demo model's three figures
(test hands refused, real non-hand DICOM files refused, generated mistakes refused)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pydicom.data
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian
from sklearn.datasets import load_sample_images

from boneage.config.errors import ConfigError
from boneage.evaluate import evaluate
from boneage.evaluation.ensemble import load_members
from boneage.export import export
from boneage.predict import predict
from boneage.selfcheck.fitting import gate_of
from boneage.selfcheck.gate import Gate
from boneage.selfcheck.header import header_refusal
from boneage.selfcheck.measure import best_method, methods_table
from boneage.selfcheck.methods import METHODS, Evidence
from boneage.serve import build_app
from boneage.serving.load_test import served
from tests.browser import needs_chromium
from tests.dicom_files import dataset, radiograph, write_dicom
from tests.helpers import ROOT, cli_environment, compose_app
from tests.test_serve import assert_laid_out, page_with_answer

ACCEPTED = ["CR", "DX", "RG", "OT"]
EARLIER = ROOT / "tests" / "fixtures" / "earlier_version"  # written by boneage before self-validation
IMPOSSIBLE = {"CT", "MR", "US", "NM", "PT", "RTDOSE", "RTPLAN", "RTSTRUCT", "SEG", "SR", "ECG"}


def pydicom_files() -> list[tuple[str, pydicom.Dataset]]:
    """pydicom's own test files (written by other vendors' tools) whose header parses."""
    found = []
    for file in pydicom.data.get_testdata_files():
        try:
            found.append((file, pydicom.dcmread(file, stop_before_pixels=True)))
        except Exception:  # not DICOM (their folder also holds other files)
            continue
    return found


def test_the_header_refuses_every_object_that_cannot_be_a_radiograph_and_only_those(tmp_path):
    files = pydicom_files()
    refused = {file: header_refusal(file, ACCEPTED) for file, _ in files}
    impossible = [file for file, header in files if str(header.get("Modality", "")) in IMPOSSIBLE]
    assert len(impossible) >= 100  # CT, MR, US, NM, RT dose and plan, SEG, SR, ECG from pydicom's set
    assert all(refused[file] for file in impossible)
    ct = next(file for file, header in files if header.get("Modality") == "CT")
    assert "modality CT cannot be a hand radiograph" in refused[ct]
    radiographs = [file for file, header in files if str(header.get("Modality", "")) in ("CR", "OT")]
    assert radiographs and not any(refused[file] for file in radiographs)  # left to the image's features
    hand = write_dicom(tmp_path / "hand.dcm", radiograph(), ExplicitVRLittleEndian)  # a DX radiograph
    assert header_refusal(hand, ACCEPTED) is None
    assert header_refusal(hand, ["CR"]) is not None  # the accepted modalities are the user's
    report = dataset((8, 8), ExplicitVRLittleEndian, 8)
    report.Modality, report.SOPClassUID = "OT", pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.88.11")  # a Basic Text SR
    report.file_meta.MediaStorageSOPClassUID = report.SOPClassUID
    report.PixelData = bytes(64)
    report.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    assert "Basic Text SR Storage" in header_refusal(tmp_path / "report.dcm", ACCEPTED)


def features_gate(method: str, quantile: float = 0.95) -> tuple[Gate, np.random.Generator]:
    random = np.random.default_rng(0)
    centres = random.normal(0, 1, (3, 32)) + 4.0
    strata = np.repeat(np.arange(3), 100)
    familiar = Evidence(centres[strata] + random.normal(0, 1, (300, 32)), {}, None)
    fitted, validation = {}, {}
    for name in ("knn", "mahalanobis"):
        fitted[name], validation[name] = METHODS[name].fitted(familiar, strata, 5)
    return Gate(fitted, validation, method, quantile), random


@pytest.mark.parametrize("method", ["knn", "mahalanobis", "combined"])
def test_each_method_refuses_about_one_minus_the_quantile_of_new_familiar_images_and_every_foreign_one(method):
    gate, random = features_gate(method)
    centres = np.random.default_rng(0).normal(0, 1, (3, 32)) + 4.0  # the same strata, new images of them
    new = Evidence(centres[random.integers(0, 3, 2000)] + random.normal(0, 1, (2000, 32)), {}, None)
    assert gate.verdicts(new).refused.mean() == pytest.approx(0.05, abs=0.03)
    foreign = Evidence(random.normal(0, 1, (50, 32)) - 4.0, {}, None)  # pointing elsewhere
    assert gate.verdicts(foreign).refused.all()
    table = methods_table(gate, new, foreign)
    assert table[method]["auroc"] > 0.99 and table[method]["refused"] == 1.0
    assert best_method(table) in gate.names


def test_a_stored_gate_gives_the_same_verdicts_and_an_unknown_method_is_named(tmp_path):
    gate, random = features_gate("mahalanobis")
    entry = gate.save(tmp_path)
    loaded = Gate.load(tmp_path, json.loads(json.dumps(entry)))
    images = Evidence(random.normal(4, 2, (200, 32)), {}, None)
    assert np.array_equal(gate.verdicts(images).refused, loaded.verdicts(images).refused)
    assert np.array_equal(gate.verdicts(images).scores, loaded.verdicts(images).scores)
    with pytest.raises(ConfigError, match=r"ood_method='energy'.*'knn', 'mahalanobis', 'combined'"):
        gate.with_choice("energy", 0.99)
    with pytest.raises(ConfigError, match=r"ood_quantile=1\.5"):
        gate.with_choice("knn", 1.5)


def test_max_softmax_scores_an_unsure_class_head_higher():
    confident, unsure = np.array([[0.97, 0.02, 0.01]]), np.array([[0.4, 0.35, 0.25]])
    method = METHODS["max_softmax"]()
    scores = [method.scores(Evidence(np.zeros((1, 2)), {"stage": p}, None))[0] for p in (confident, unsure)]
    assert scores[0] < scores[1]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, make_train_run):
    """The demo model of `make train` (tests/helpers.py: demo_model), and its ONNX export."""
    root = tmp_path_factory.mktemp("demo")
    run = make_train_run
    exported = export(compose_app("export", [f"run={run}", f"output_dir={root / 'export'}"]))
    return run, exported


def pacs_folder(run: Path, folder: Path, hands: int = 40) -> Path:
    """A PACS-like folder: every DICOM file of pydicom's test set, and demo test hands."""
    (folder / "other").mkdir(parents=True)
    for index, (file, _) in enumerate(pydicom_files()):
        shutil.copy(file, folder / "other" / f"{index:03d}_{Path(file).name}")
    (folder / "hands").mkdir()
    splits = pd.read_csv(run / "splits.csv")
    for image in splits.loc[splits["set"] == "test", "image"].head(hands):
        shutil.copy(image, folder / "hands")
    return folder


@pytest.mark.slow(seconds=300)  # may train the demo model as `make train` does
def test_the_demo_model_refuses_what_is_not_a_hand_and_almost_no_hands_from_the_run_and_its_export(demo_run, tmp_path):
    run, exported = demo_run
    evaluated = evaluate(compose_app("evaluate", [f"run={run}", f"output_dir={tmp_path / 'e'}", "heatmaps=false"]))
    checked = json.loads((evaluated / "metrics.json").read_text())["self_validation"]
    assert checked["method"] == "knn" and checked["share"] <= 0.01  # at most 1% of the test hands refused
    assert checked["ood_set"]["source"] == "generated" and checked["ood_set"]["images"] >= 250
    assert checked["ood_set"]["refused"] >= 0.95  # the generated mistakes
    assert set(checked["methods"]) == {"knn", "mahalanobis", "combined"}
    assert "## Self-validation" in (evaluated / "report.md").read_text()

    folder = pacs_folder(run, tmp_path / "pacs")
    written = {}
    for name, model in (("run", run), ("export", exported)):
        output = tmp_path / f"{name}.csv"
        predict(compose_app("predict", [f"run={model}", f"input={folder}", f"output={output}"]))
        written[name] = pd.read_csv(output)
    table = written["run"]
    non_hands = [str(file) for file in (folder / "other").iterdir()]
    listed = pd.read_csv(tmp_path / "run_unreadable.csv")  # DICOMDIRs, files without pixels
    answered = table[table["image"].isin(non_hands) & table["assessed"].astype(bool)]
    assert len(answered) <= 0.01 * len(non_hands)  # at least 99% of the real non-hand DICOM files refused
    assert len(table) + len(listed) == len(non_hands) + 40
    hands = table[table["image"].str.contains("/hands/")]
    assert len(hands) == 40 and hands["predicted_age"].notna().all()
    pd.testing.assert_series_equal(written["export"]["assessed"], table["assessed"])  # the same gate, image for image
    assert np.allclose(written["export"]["ood_score"], table["ood_score"], atol=1e-4, equal_nan=True)

    ct = next(file for file in (folder / "other").iterdir() if "CT_small" in file.name)
    photo = next(iter((evaluated / "mistakes").glob("photograph_*.png")))
    hand = next(iter((folder / "hands").iterdir()))
    for reject in ("true", "false"):
        with TestClient(build_app(compose_app("serve", [f"run={exported}", f"reject={reject}"]))) as client:
            assert client.get("/model").json()["self_validation"]["method"] == "knn"
            replies = {file.name: client.post("/predict", files={"file": (file.name, file.read_bytes())})
                       for file in (ct, photo, hand)}  # fmt: skip
        assert all(reply.status_code == 200 for reply in replies.values())
        ct_reply, photo_reply, hand_reply = (replies[file.name].json() for file in (ct, photo, hand))
        assert ct_reply["assessed"] is False and "modality CT" in ct_reply["reason"] and "predicted_age" not in ct_reply
        assert (
            photo_reply["assessed"] is False
            and "unlike the images this model was validated on" in photo_reply["reason"]
        )
        assert ("predicted_age" in photo_reply) == (reject == "false")  # reject=false answers and flags
        assert hand_reply["assessed"] is True and hand_reply["predicted_age"] > 0


def test_an_export_from_before_self_validation_is_refused_with_the_way_out():
    members = load_members(str(EARLIER / "export_age"), None, None)
    with pytest.raises(ConfigError, match=r"without self-validation: export its run again, or give ood_quantile=null"):
        gate_of(members, "none", None, "knn", 0.995)
    assert gate_of(members, "none", None, "knn", None) is None  # answered unchecked, as the user asked


@pytest.mark.slow
@needs_chromium
def test_the_page_says_why_an_image_is_not_assessed_and_shows_no_age(demo_run, data_dir, tmp_path):
    from selenium.webdriver.common.by import By

    _, exported = demo_run
    photo = tmp_path / "photo.png"  # a crop of scikit-learn's sample photograph
    Image.fromarray(np.asarray(Image.fromarray(load_sample_images().images[0]).convert("L"))[100:356, 200:456]).save(
        photo
    )
    with served([f"run={exported}"], tmp_path, cli_environment(data_dir)) as server:
        ready = (By.CSS_SELECTOR, "#result .flag")
        with page_with_answer(server.url, photo, "age in years", ready) as page:
            shown = page.find_element(By.ID, "result").text
            heads = page.find_elements(By.CSS_SELECTOR, "#result .head")
            assert_laid_out(page, "page-not-assessed")
    assert shown.startswith("Not assessed: unlike the images this model was validated on (knn score")
    assert not heads and "Predicted age" not in shown
