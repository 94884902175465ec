"""A model fitted to a site: the per-sex correction's maths, its figures measured out of sample,
and the demo model on a generated second site (another population's pace, brighter plates),
corrected from 150 of its images and measured on others it never saw."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from fastapi.testclient import TestClient

from boneage.calibrate import calibrate, site_rows
from boneage.config.errors import DataError
from boneage.datamodules.images import ImageLimits
from boneage.datamodules.synthetic import SyntheticHands
from boneage.evaluation.answers import answers_for
from boneage.evaluation.exported import SIDECAR
from boneage.evaluation.site import ALL, bias_figures, cross_fitted, fit_site_correction
from boneage.pacs.assessment import Assessment, Assessor
from boneage.pacs.identity import NodeIdentity
from boneage.pacs.report import structured_report
from boneage.predict import predict
from boneage.serve import build_app
from boneage.tasks import AgeHead
from tests.dicom_files import write_dicom
from tests.helpers import compose_app, run_cli

SITE = {"advance_years": (0.8, 1.3), "exposure": 1.2}  # its children mature ahead; its plates are brighter
READER = NodeIdentity("Reading room", "1", "-", manufacturer="Reporting workstation")  # a radiologist's reports
IDENTITY = NodeIdentity("demo", "epoch006.ckpt", "0123456789ab")  # boneage's own answers


def biased_site(images: int, seed: int) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Answers with a compressed slope, on average about 1.5 years too old for girls and 1 for boys."""
    random = np.random.default_rng(seed)
    truth = random.uniform(1, 18, images)
    sexes = pd.Series(random.choice(["F", "M"], images))
    answered = 0.9 * truth + np.where(sexes == "F", 1.5, 1.0) + 0.9 + random.normal(0, 0.8, images)
    return answered, truth, sexes


def test_each_sex_gets_its_own_line_and_an_unknown_sex_the_line_of_all():
    answered, truth, sexes = biased_site(2000, seed=0)
    correction = fit_site_correction("age", answered, truth, sexes)
    for sex in ("F", "M"):
        chosen = (sexes == sex).to_numpy()
        corrected = correction.corrected(answered[chosen], sexes[chosen])
        assert abs((corrected - truth[chosen]).mean()) < 0.05
        assert correction.lines[sex][0] == pytest.approx(1 / 0.9, rel=0.05)
    unknown = correction.corrected(answered[:3], pd.Series([None, "O", "F"]))
    slope, intercept = correction.lines[ALL]
    np.testing.assert_allclose(unknown[:2], slope * answered[:2] + intercept)


def test_the_figures_after_correction_are_measured_on_images_each_line_was_not_fitted_on():
    answered, truth, sexes = biased_site(150, seed=1)
    after = cross_fitted("age", answered, truth, sexes, seed=0)
    in_sample = fit_site_correction("age", answered, truth, sexes).corrected(answered, sexes)
    out_of_sample = np.abs(after - truth).mean()
    assert out_of_sample > np.abs(in_sample - truth).mean()  # the fit's own residuals flatter it
    before, corrected = (bias_figures(values, truth, sexes, 1000, 0) for values in (answered, after))
    for sex in ("F", "M"):
        low, high = before[sex]["bias_95"]
        assert low < before[sex]["bias"] < high and before[sex]["bias"] > 0.5
        assert abs(corrected[sex]["bias"]) < 0.3 and corrected[sex]["mae"] < before[sex]["mae"]
    assert before[ALL]["images"] == 150


def test_too_few_labelled_images_get_a_clear_error():
    answered, truth, sexes = biased_site(5, seed=2)
    with pytest.raises(DataError, match="at least 10 labelled images; the input has 5"):
        fit_site_correction("age", answered, truth, sexes)


def site_archive(labels: Path, images: Path, folder: Path) -> Path:
    """The site's images as its archive exports them: each a DICOM radiograph with PatientSex,
    and its reading, in months, in a structured report of a reporting workstation (plus one
    answer written by boneage itself, which is no reading)."""
    for index, row in enumerate(pd.read_csv(labels).itertuples()):
        pixels = cv2.imread(str(images / row.image), cv2.IMREAD_GRAYSCALE)
        image = write_dicom(folder / f"IM{index:04d}", pixels, PatientSex=row.sex, PatientID=row.subject)
        reading = Assessment(bone_age=12 * row.age_years, sex=row.sex, level=0.9)
        source = pydicom.dcmread(image, stop_before_pixels=True)
        structured_report(source, reading, READER).save_as(folder / f"SR{index:04d}", enforce_file_format=True)
        if index == 0:
            answer = replace(reading, bone_age=0.0)
            structured_report(source, answer, IDENTITY).save_as(folder / "boneage_answer", enforce_file_format=True)
    return folder


def test_a_dicom_folder_gives_each_image_its_reading_in_years_and_never_a_models_answer(tmp_path):
    labels, images = site_table(tmp_path, subjects=4, seed=3)
    folder = site_archive(labels, images, tmp_path / "archive")
    cfg = compose_app("calibrate", [f"run={tmp_path}", f"input={folder}"])
    rows = site_rows(cfg)
    table = pd.read_csv(labels)
    assert len(rows) == len(table)  # every image read, each once; the boneage answer taken for none
    read = rows.assign(file=rows["image"].map(lambda path: int(Path(path).name[2:]))).sort_values("file")
    np.testing.assert_allclose(read["truth_years"], table["age_years"], atol=1e-6)
    assert read["sex"].tolist() == table["sex"].tolist()
    for report in folder.glob("SR*"):
        report.unlink()
    with pytest.raises(DataError, match="no bone-age readings in this folder"):
        site_rows(cfg)


def site_table(root: Path, subjects: int, seed: int) -> tuple[Path, Path]:
    """A generated second site's labels and image folder."""
    hands = SyntheticHands(root=str(root), n_subjects=subjects, seed=seed, **SITE)
    hands.load({"age": AgeHead()})
    return hands.folder / "labels.csv", hands.folder / "images"


def test_a_site_table_without_its_age_column_is_named(tmp_path):
    labels, images = site_table(tmp_path, subjects=4, seed=3)
    cfg = compose_app("calibrate", [f"run={tmp_path}", f"input={labels}", f"image_dir={images}", "age_column=bone_age"])
    with pytest.raises(DataError, match=r"has no column 'bone_age' \(age_column\); it has \['image', 'subject'"):
        calibrate(cfg)


@pytest.mark.slow(seconds=150)
def test_the_demo_model_fitted_to_a_second_site_loses_most_of_its_bias_there(tmp_path, data_dir, make_train_run):
    run = make_train_run
    labels, images = site_table(tmp_path / "site", subjects=75, seed=11)
    calibration = tmp_path / "calibration.csv"
    pd.read_csv(labels).head(150).to_csv(calibration, index=False)  # the site's 150 labelled images
    fitted = tmp_path / "fitted"
    result = run_cli([f"run={run}", f"input={calibration}", f"image_dir={images}", "age_column=age_years",
                      f"output_dir={fitted}"], tmp_path, data_dir, app="boneage.calibrate")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bias" in result.stdout and "cross-fitted" in result.stdout
    stored = json.loads((fitted / SIDECAR).read_text())
    assert set(stored["trust"]["site"]["lines"]) == {"F", "M", ALL}
    assert stored["site"]["images"] + stored["site"]["not_assessed"] == 150
    archive = site_archive(calibration, images, tmp_path / "archive")  # the same readings, as DICOM
    from_archive = calibrate(
        compose_app("calibrate", [f"run={run}", f"input={archive}", f"output_dir={tmp_path / 'a'}"])
    )
    lines = json.loads((from_archive / SIDECAR).read_text())["trust"]["site"]["lines"]
    for sex, line in stored["trust"]["site"]["lines"].items():
        np.testing.assert_allclose(lines[sex], line, rtol=1e-5)

    held_out, held_out_images = site_table(tmp_path / "site", subjects=120, seed=12)  # children it never saw
    errors = {}
    for name, model in (("before", run), ("after", fitted)):
        output = tmp_path / f"{name}.csv"
        predict(compose_app("predict", [f"run={model}", f"input={held_out}", f"image_dir={held_out_images}",
                                        f"output={output}"]))  # fmt: skip
        table = pd.read_csv(output)
        table = table[table["assessed"].astype(bool)]
        errors[name] = table.assign(error=table["predicted_age"] - table["age_years"])
    for sex in ("F", "M"):
        before, after = (errors[name].loc[errors[name]["sex"] == sex, "error"] for name in ("before", "after"))
        assert abs(after.mean()) <= 0.3 * abs(before.mean())  # the bias falls by at least 70%
    assert errors["after"]["error"].abs().mean() < errors["before"]["error"].abs().mean()

    first = errors["after"].iloc[0]
    image = held_out_images / Path(first["image"]).name
    with TestClient(build_app(compose_app("serve", [f"run={fitted}"]))) as client:
        unsexed = client.post("/predict", files={"file": (image.name, image.read_bytes())})
        answer = client.post("/predict", files={"file": (image.name, image.read_bytes())}, data={"sex": first["sex"]})
    assert unsexed.status_code == 422 and "sex" in unsexed.text  # its correction is per sex
    assert answer.json()["predicted_age"] == pytest.approx(first["predicted_age"], abs=1e-3)

    pacs = compose_app("pacs", [f"run={fitted}", "send_to=ARCHIVE@127.0.0.1:4242"])
    node = Assessor(answers_for(pacs, intervals=True), pacs.interval, ImageLimits(), list(pacs.accepted_modalities))
    pixels = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    sexed = node.assess(write_dicom(tmp_path / "sexed.dcm", pixels, PatientSex=first["sex"]))
    assert sexed.assessed, sexed.reason
    assert sexed.bone_age == pytest.approx(12 * first["predicted_age"], abs=1e-3)  # the node answers corrected
    assert "no sex" in node.assess(write_dicom(tmp_path / "unsexed.dcm", pixels)).reason
