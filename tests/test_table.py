"""Users' own tables: CSV and XLSX, their column names, their image formats."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from boneage.config.errors import DataError
from boneage.datamodules import ImageDataModule, SubjectSplit, TableSource
from boneage.datamodules.images import read_grayscale
from boneage.tasks import AgeTask
from tests.helpers import AGE_HEADS

COLUMNS = {"image": "Filename", "age": "BoneAge(months)", "subject": "PatientID", "sex": "Gender"}


def write_images_and_table(folder, suffix: str) -> pd.DataFrame:
    """20 patients x 2 images, custom column names, ages in months."""
    (folder / "imgs").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for patient in range(20):
        for visit in range(2):
            name = f"p{patient}_{visit}.png"
            cv2.imwrite(str(folder / "imgs" / name), rng.integers(0, 255, (40, 30), dtype=np.uint8))
            sex = "female" if patient % 2 else "M"
            age = 12 * (patient % 18) + visit
            rows.append({"Filename": name, "PatientID": f"P{patient}", "Gender": sex, "BoneAge(months)": age})
    raw = pd.DataFrame(rows)
    path = folder / f"labels{suffix}"
    raw.to_excel(path, index=False) if suffix == ".xlsx" else raw.to_csv(path, index=False)
    return raw


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_csv_and_xlsx_with_custom_column_names(tmp_path, suffix):
    raw = write_images_and_table(tmp_path, suffix)
    source = TableSource(str(tmp_path / f"labels{suffix}"), str(tmp_path / "imgs"), COLUMNS, age_unit="months")
    table = source.load(AGE_HEADS)
    assert list(table.columns) == ["image", "age", "subject", "sex", "row", "problem", "file"]
    assert table["problem"].isna().all()
    assert table["age"].tolist() == raw["BoneAge(months)"].astype(float).tolist()
    assert set(table["sex"]) == {"F", "M"}
    assert table["subject"].nunique() == 20
    datamodule = ImageDataModule(
        source, SubjectSplit(stratum_width=60), image_size=32, batch_size=4, task=AgeTask(), num_workers=0
    )
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 1, 32, 32)
    assert datamodule.summary()["units"] == {"age": "months"}


def test_missing_column_lists_the_columns_that_exist(tmp_path):
    write_images_and_table(tmp_path, ".csv")
    columns = COLUMNS | {"age": "age"}
    source = TableSource(str(tmp_path / "labels.csv"), str(tmp_path / "imgs"), columns)
    with pytest.raises(DataError, match=r"'age' \(data.source.columns.age\).*Filename, PatientID, Gender"):
        source.load(AGE_HEADS)


def test_without_subject_column_every_image_is_its_own_subject(tmp_path):
    (tmp_path / "labels.csv").write_text("image,age\na.png,10\nb.png,11\n")
    table = TableSource(str(tmp_path / "labels.csv"), str(tmp_path)).load(AGE_HEADS)
    assert table["subject"].tolist() == ["a.png", "b.png"]


RAMP = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (8, 1))  # dark left, bright right


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("gray8.png", RAMP),
        ("gray16.png", RAMP.astype(np.uint16) * 10 + 1000),  # a 12-bit detector's range
        ("rgb.png", np.dstack([RAMP] * 3)),
        ("rgba.png", np.dstack([RAMP] * 3 + [np.full_like(RAMP, 255)])),
        ("gray.jpg", RAMP),
    ],
)
def test_images_of_any_depth_and_channels_become_8bit_gray(tmp_path, name, image):
    cv2.imwrite(str(tmp_path / name), image)
    gray = read_grayscale(tmp_path / name)
    assert gray.dtype == np.uint8 and gray.shape == (8, 25)
    assert gray[:, 0].mean() < 20 and gray[:, -1].mean() > 220  # full range, dark to bright


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png"):
        read_grayscale(tmp_path / "broken.png")
