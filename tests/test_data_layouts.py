"""Data as it comes: the RSNA layout, ids without extensions, True/False sex columns, DICOM
files as hospitals export them, column names with parentheses and CJK letters."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from hydra.utils import instantiate
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from boneage.config.cli import check_override_syntax
from boneage.datamodules.images import read_grayscale
from boneage.datamodules.table import TableSource
from tests.helpers import AGE_HEADS, compose_app


def write_rsna_layout(folder, n: int = 12) -> pd.DataFrame:
    """boneage-training-dataset.csv (id, boneage in months, male True/False) and <id>.png images."""
    images = folder / "boneage-training-dataset"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = [{"id": 1377 + i, "boneage": 12 * (i + 1), "male": i % 2 == 0} for i in range(n)]
    for row in rows:
        cv2.imwrite(str(images / f"{row['id']}.png"), rng.integers(0, 255, (40, 30), dtype=np.uint8))
    table = pd.DataFrame(rows)
    table.to_csv(folder / "boneage-training-dataset.csv", index=False)
    return table


def test_data_rsna_reads_the_rsna_files_as_they_come(tmp_path):
    raw = write_rsna_layout(tmp_path)
    cfg = compose_app(
        "train",
        [
            "data=rsna",
            f"data.source.path={tmp_path}/boneage-training-dataset.csv",
            f"data.source.image_dir={tmp_path}/boneage-training-dataset",
        ],
    )
    table = instantiate(cfg.data.source).load(AGE_HEADS)
    assert table["problem"].isna().all(), table["problem"].dropna().tolist()
    assert table["sex"].tolist() == ["M" if male else "F" for male in raw["male"]]
    assert table["age"].tolist() == raw["boneage"].astype(float).tolist()
    assert cfg.data.source.age_unit == "months"
    assert table["subject"].nunique() == len(raw)  # one radiograph per child


def test_ids_without_extension_get_a_hint_and_true_false_sex_asks_for_its_meaning(tmp_path):
    write_rsna_layout(tmp_path)
    columns = {"image": "id", "age": "boneage", "subject": None, "sex": "male"}
    plain = TableSource(
        f"{tmp_path}/boneage-training-dataset.csv", f"{tmp_path}/boneage-training-dataset", columns, age_unit="months"
    )
    problems = plain.load(AGE_HEADS)["problem"].value_counts()
    assert problems.to_dict() == {
        "unknown sex code 'True' (declare what it means: data.source.sex_codes, e.g. {true: M, false: F})": 6,
        "unknown sex code 'False' (declare what it means: data.source.sex_codes, e.g. {true: M, false: F})": 6,
    }
    plain.sex_codes = {True: "M", False: "F"}
    problems = plain.load(AGE_HEADS)["problem"].value_counts()
    assert problems.to_dict() == {
        "file not found, but the name with .png is there (set data.source.image_suffix=.png)": 12
    }


def test_zero_one_sex_codes_with_a_declared_meaning(tmp_path):
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    (tmp_path / "b.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    pd.DataFrame({"image": ["a.png", "b.png"], "age": [3, 4], "sex": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    columns = {"image": "image", "age": "age", "subject": None, "sex": "sex"}
    source = TableSource(str(tmp_path / "t.csv"), str(tmp_path), columns, sex_codes={0: "F", 1: "M"})
    assert source.load(AGE_HEADS)["sex"].tolist() == ["F", "M"]


def write_dicom(path, pixels: np.ndarray, photometric: str, slope: float = 1.0, intercept: float = 0.0, window=None):
    """A DICOM file as a modality exports it (uncompressed, 16-bit)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CR"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.RescaleSlope, dataset.RescaleIntercept = slope, intercept
    if window:
        dataset.WindowCenter, dataset.WindowWidth = window
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)


def test_dicom_monochrome1_is_inverted_and_the_window_applied(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 64), (32, 1)).astype(np.uint16)  # 12-bit values, dark to bright
    write_dicom(tmp_path / "mono2.dcm", ramp, "MONOCHROME2")
    write_dicom(tmp_path / "mono1", ramp, "MONOCHROME1", slope=2.0, intercept=-100.0)  # no extension, as PACS exports
    write_dicom(tmp_path / "windowed.dcm", ramp, "MONOCHROME2", window=(1000, 1000))

    bright_right = read_grayscale(tmp_path / "mono2.dcm")
    assert bright_right.dtype == np.uint8 and bright_right.shape == (32, 64)
    assert bright_right[:, 0].max() == 0 and bright_right[:, -1].min() == 255  # 12 bits stretched to 0..255
    bright_left = read_grayscale(tmp_path / "mono1")
    assert bright_left[:, 0].min() == 255 and bright_left[:, -1].max() == 0  # MONOCHROME1: bone is bright
    windowed = read_grayscale(tmp_path / "windowed.dcm")
    inside = (ramp[0] > 500) & (ramp[0] < 1500)
    assert (windowed[:, ramp[0] >= 1500] == 255).all()  # the window 500..1500 spans the whole range
    assert len(np.unique(windowed[0, inside])) > 10

    pd.DataFrame({"image": ["mono2.dcm", "mono1"], "age": [5, 6]}).to_csv(tmp_path / "t.csv", index=False)
    table = TableSource(str(tmp_path / "t.csv"), str(tmp_path)).load(AGE_HEADS)
    assert table["problem"].isna().all()


@pytest.mark.parametrize("column", ["Age(years)", "年龄(岁)", "age in years"])
def test_column_names_as_they_are_from_yaml_and_from_the_command_line(tmp_path, column):
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    pd.DataFrame({"image": ["a.png"], column: [7.5]}).to_csv(tmp_path / "t.csv", index=False)
    command_line = f'data.source.columns.age="{column}"'  # as the shell passes '...="Age(years)"'
    check_override_syntax([command_line])
    cfg = compose_app(
        "train", ["data=table", f"data.source.path={tmp_path}/t.csv", f"data.source.image_dir={tmp_path}", command_line]
    )
    assert cfg.data.source.columns.age == column
    assert instantiate(cfg.data.source).load(AGE_HEADS)["age"].tolist() == [7.5]


def test_an_unquoted_column_name_gets_the_quoted_form(tmp_path):
    with pytest.raises(SystemExit) as stopped:
        check_override_syntax(["model=tiny", "data.source.columns.age=Age(years)"])
    message = str(stopped.value)
    assert "'data.source.columns.age=\"Age(years)\"'" in message
    with pytest.raises(SystemExit) as stopped:
        check_override_syntax(["data.source.columns.age=年龄(岁)"])
    assert "'data.source.columns.age=\"年龄(岁)\"'" in str(stopped.value)


def test_a_list_of_overrides_gets_each_item_quoted_and_stays_a_list():
    with pytest.raises(SystemExit) as stopped:
        check_override_syntax(["bench.first_step_overrides=[experiment=demo,trainer.max_epochs=1]"])
    suggested = str(stopped.value).splitlines()[2].strip()[1:-1]  # the line to paste, without the shell's quotes
    assert suggested == 'bench.first_step_overrides=["experiment=demo","trainer.max_epochs=1"]'
    check_override_syntax([suggested])
    assert list(compose_app("bench", [suggested]).bench.first_step_overrides) == [
        "experiment=demo",
        "trainer.max_epochs=1",
    ]
