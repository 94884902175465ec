"""Bad tables and files are caught before training, with the rows and the fix named."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from boneage.config.errors import DataError
from boneage.datamodules import ImageDataModule, SubjectSplit, TableSource
from boneage.datamodules.images import NOT_AN_IMAGE
from boneage.tasks import AgeTask
from tests.helpers import AGE_HEADS

COLUMNS = {"image": "file", "age": "age", "subject": "patient", "sex": "sex"}


def dataset_folder(tmp_path, rows: list[tuple], n_good: int = 30):
    """Writes n_good valid images and rows, then the given extra rows, as labels.csv."""
    images = tmp_path / "images"
    images.mkdir()
    table = []
    for i in range(n_good):
        cv2.imwrite(str(images / f"ok{i}.png"), np.full((16, 16), i, np.uint8))
        table.append((f"ok{i}.png", 5 + i % 10, f"p{i}", "F"))
    table += rows
    pd.DataFrame(table, columns=["file", "age", "patient", "sex"]).to_csv(tmp_path / "labels.csv", index=False)
    return TableSource(str(tmp_path / "labels.csv"), str(images), COLUMNS)


def datamodule(source, tmp_path, **kwargs) -> ImageDataModule:
    split = SubjectSplit(stratum_width=20, min_subjects_per_bin=1)
    return ImageDataModule(
        source, split, 16, 4, task=AgeTask(), num_workers=0, output_dir=str(tmp_path / "run"), **kwargs
    )


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (("ok0.png", 7, "p99", "F"), "duplicate of row 2"),
        (("ok1.png", "seven", "p98", "F"), "age missing or not a number"),
        (("ok2.png", None, "p98", "F"), "age missing or not a number"),
        (("ok3.png", -2, "p98", "F"), "negative age"),
        (("ok4.png", 1980, "p98", "F"), "implausible age (over 130 years)"),
        (
            ("ok5.png", 9, "p98", "x"),
            "unknown sex code 'x' (declare what it means: data.source.sex_codes, e.g. {true: M, false: F})",
        ),
        (("../outside.png", 9, "p98", "F"), "path outside the image folder"),
        (("absent.png", 9, "p98", "F"), "file not found"),
    ],
)
def test_each_kind_of_bad_row_is_named_with_its_row(tmp_path, row, reason):
    (tmp_path / "outside.png").write_bytes(b"")  # exists, but must not be reachable
    source = dataset_folder(tmp_path, [row])
    with pytest.raises(DataError) as caught:
        datamodule(source, tmp_path).setup()
    message = str(caught.value)
    assert f"{reason}: 1 row(s): 32 ({row[0]})" in message  # 30 good rows + header: row 32
    assert "data.on_bad_rows=drop" in message


def test_missing_and_corrupt_files_are_counted_and_the_first_few_listed(tmp_path):
    rows = [(f"gone{i}.png", 9, f"q{i}", "M") for i in range(8)]
    source = dataset_folder(tmp_path, rows)
    (tmp_path / "images" / "ok7.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "images" / "ok8.png").write_text("not an image at all")
    with pytest.raises(DataError) as caught:
        datamodule(source, tmp_path).setup()
    message = str(caught.value)
    assert "10 bad row(s)" in message
    assert "file not found: 8 row(s): 32 (gone0.png), 33 (gone1.png)" in message and "and 3 more" in message
    assert f"{NOT_AN_IMAGE}: 2 row(s): 9 (ok7.png), 10 (ok8.png)" in message


def test_drop_leaves_bad_rows_out_of_every_loader_and_lists_them(tmp_path):
    source = dataset_folder(tmp_path, [("absent.png", 9, "p98", "F"), ("ok0.png", -1, "p97", "F")])
    data = datamodule(source, tmp_path, on_bad_rows="drop")
    data.setup()
    assert len(data.table) == 30 and data.summary()["dropped_rows"] == 2
    datasets = [loader.dataset for loader in (data.train_dataloader(), data.val_dataloader(), data.test_dataloader())]
    assert sorted(Path(image).name for d in datasets for image in d.images) == sorted(f"ok{i}.png" for i in range(30))
    assert all(age >= 0 for d in datasets for age in d.targets["age"])  # ok0.png is served with its good row only
    dropped = pd.read_csv(tmp_path / "run" / "dropped_rows.csv")
    assert dropped["problem"].tolist() == ["file not found", "negative age"]
    assert dropped["row"].tolist() == [32, 33]


def test_a_table_of_only_bad_rows_is_refused_even_with_drop(tmp_path):
    source = dataset_folder(tmp_path, [("absent.png", 9, "p98", "F")], n_good=0)
    with pytest.raises(DataError, match="file not found"):
        datamodule(source, tmp_path, on_bad_rows="drop").setup()


def test_empty_table_is_refused(tmp_path):
    (tmp_path / "labels.csv").write_text("file,age\n")
    with pytest.raises(DataError, match="has no rows"):
        TableSource(str(tmp_path / "labels.csv"), str(tmp_path), {"image": "file", "age": "age"}).load(AGE_HEADS)


def test_months_have_their_own_plausible_range(tmp_path):
    source = dataset_folder(tmp_path, [("ok0.png", 200, "p98", "F")])
    source.age_unit = "months"
    problems = source.load(AGE_HEADS)["problem"]
    assert problems.iloc[-1] == "duplicate of row 2"  # 200 months is a teenager: no age problem
