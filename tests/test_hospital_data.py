"""Hospital data as it arrives: every DICOM transfer syntax, colour and multi-frame files, odd pixel
types, PACS folder layouts, the header as data, and decompression bombs refused from the header."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom.data
import pytest
from pydicom.uid import JPEG2000, JPEGBaseline8Bit, RLELossless

from boneage.config.errors import ConfigError
from boneage.datamodules import ImageDataModule, SubjectSplit, TableSource
from boneage.datamodules.dicom_header import patient_fields
from boneage.datamodules.images import ImageLimits, UnreadableImage, read_grayscale, unreadable_reason
from boneage.datamodules.intake import images_in_folder, set_aside_unreadable
from boneage.tasks import AgeTask
from boneage.tasks.clinical import chronological_figures, compare_with_chronological
from tests.dicom_files import (
    EVERY_SYNTAX,
    LOSSLESS,
    LOSSY,
    deflated_bomb,
    pacs_export,
    padded_deflated,
    png_bomb,
    radiograph,
    write_colour_frames,
    write_dicom,
    write_dicom_bomb,
    write_float,
    write_palette,
    write_report,
    write_signed,
)
from tests.helpers import TINY, run_cli

BOMB_LIMIT = ImageLimits(max_pixels=50_000_000)  # the shipped default


@pytest.mark.parametrize("syntax", EVERY_SYNTAX, ids=lambda uid: uid.name)
@pytest.mark.parametrize("bits", [8, 12])
def test_every_transfer_syntax_reads_as_the_uncompressed_image(tmp_path, syntax, bits):
    detector = radiograph()
    pixels = detector if bits == 12 else (detector >> 4).astype(np.uint8)
    expected = read_grayscale(write_dicom(tmp_path / "plain.dcm", pixels))
    image = read_grayscale(write_dicom(tmp_path / "IM000001", pixels, syntax), BOMB_LIMIT)  # no extension
    assert image.dtype == np.uint8 and image.shape == pixels.shape
    difference = np.abs(image.astype(int) - expected)
    if syntax in LOSSLESS:
        assert difference.max() == 0
    else:
        assert syntax in LOSSY and difference.mean() < 3  # lossy: the same image within a few gray levels


def test_a_deflated_file_padded_after_its_stream_is_read_within_the_limit(tmp_path):
    pixels = radiograph(1200, 900) & 0xF00  # 2 MB inflated from under 1 MB: zlib stops at 1 MB and resumes
    image = read_grayscale(padded_deflated(tmp_path / "padded.dcm", pixels), BOMB_LIMIT)  # once looped for ever
    assert np.array_equal(image, read_grayscale(write_dicom(tmp_path / "plain.dcm", pixels)))


@pytest.mark.parametrize("syntax", [RLELossless, JPEGBaseline8Bit], ids=["RGB RLE", "YBR_FULL_422 JPEG"])
def test_multi_frame_colour_gives_the_first_frame_as_gray_or_a_named_refusal(tmp_path, syntax):
    frames = np.zeros((30, 40, 50, 3), np.uint8)
    frames[0, :, 25:] = (200, 200, 200)  # the first frame: dark left half, light right half
    frames[1:] = 255  # every later frame white
    path = write_colour_frames(tmp_path / "cine.dcm", frames, syntax)
    first = read_grayscale(path, BOMB_LIMIT)
    assert first.shape == (40, 50)
    assert first[:, :20].mean() < 5 and 195 < first[:, 30:].mean() < 205  # the first frame, not a mean of all 30
    refused = unreadable_reason(path, ImageLimits(multi_frame="refuse"))
    assert refused == "30 frames in one file (multi_frame=first reads the first)"


def test_palette_colour_becomes_its_luma(tmp_path):
    palette = np.zeros((256, 3))
    palette[:, 1] = np.arange(256) * 257  # index i shows as green of brightness i
    indices = np.tile(np.arange(0, 256, 5, dtype=np.uint8), (4, 1))
    gray = read_grayscale(write_palette(tmp_path / "palette.dcm", indices, palette))
    assert np.all(np.diff(gray[0].astype(int)) >= 0) and gray[0, 0] == 0 and gray[0, -1] == 255


def test_signed_and_float_pixels_read_and_non_finite_ones_are_refused(tmp_path):
    ramp = np.arange(-1000, 1000).reshape(40, 50)
    signed = read_grayscale(write_signed(tmp_path / "ct.dcm", ramp))
    floats = read_grayscale(write_float(tmp_path / "map.dcm", ramp / 1000))
    for image in (signed, floats):
        assert image[0, 0] == 0 and image[-1, -1] == 255 and np.all(np.diff(image.ravel().astype(int)) >= 0)
    holed = (ramp / 1000).astype(np.float32)
    holed[3, 3] = np.nan
    assert unreadable_reason(write_float(tmp_path / "holed.dcm", holed)) == (
        "pixels that are not finite numbers (NaN or infinity)"
    )


def test_files_without_a_usable_image_are_refused_with_their_reason(tmp_path):
    good = write_dicom(tmp_path / "good", (radiograph() >> 4).astype(np.uint8), JPEG2000)
    (tmp_path / "cut").write_bytes(good.read_bytes()[:-400])  # the end of the JPEG 2000 stream lost
    report = write_report(tmp_path / "report")
    assert "the file was cut short" in unreadable_reason(tmp_path / "cut")  # its pixel data element lost with its end
    assert unreadable_reason(report).startswith("no image in this DICOM file (Basic Text SR Storage, modality SR")
    with pytest.raises(UnreadableImage, match=r"Cannot read image .*report: no image"):
        read_grayscale(report)


def test_a_file_no_decoder_reads_names_each_decoders_reason_and_logs_no_traceback(caplog):
    """pydicom's own 12-bit JPEG Extended sample: neither pylibjpeg nor Pillow decodes it."""
    sample = pydicom.data.get_testdata_file("JPEG-lossy.dcm")
    with caplog.at_level(logging.DEBUG):
        reason = unreadable_reason(sample)
    assert re.search(r"pylibjpeg: libjpeg error .* pillow: Pillow does not support 'JPEG Extended'", reason)
    assert not [record for record in caplog.records if record.exc_info]


def test_a_bomb_is_refused_from_its_header_before_any_pixel_is_decoded(tmp_path):
    png = png_bomb(tmp_path / "bomb.png", side=8000)  # 64 MP of zeros: about 100 KB on disk
    dicom = write_dicom_bomb(tmp_path / "bomb.dcm", side=30000)  # claims 900 MP, holds one row
    assert png.stat().st_size < 300_000
    assert (
        unreadable_reason(png, BOMB_LIMIT) == "too large: 64,000,000 pixels (8000 x 8000), over max_pixels=50,000,000"
    )
    with pytest.raises(UnreadableImage) as refused:
        read_grayscale(dicom, BOMB_LIMIT)
    refusal = refused.value
    assert refusal.too_large and "900,000,000 pixels (30000 x 30000 x 1 frame(s))" in refusal.reason
    deflated = deflated_bomb(tmp_path / "deflated.dcm", hidden_mb=40)  # claims 64 x 48, inflates to 40 MB
    assert deflated.stat().st_size < 200_000
    assert unreadable_reason(deflated, ImageLimits(max_pixels=3072)) == (
        "too large: its Deflated data inflates past 16,801,792 bytes (max_pixels=3,072)"
    )
    hand = tmp_path / "hand.png"
    cv2.imwrite(str(hand), np.full((100, 80), 128, np.uint8))
    assert unreadable_reason(hand, ImageLimits(max_pixels=8000)) is None  # at the limit: read
    assert "too large" in unreadable_reason(hand, ImageLimits(max_pixels=7999))


def test_a_pacs_export_is_found_by_marker_and_its_index_skipped_with_the_reason(tmp_path):
    hand = (radiograph() >> 4).astype(np.uint8)
    files = pacs_export(tmp_path / "export", hand, PatientSex="F", PatientAge="010Y")
    (tmp_path / "export" / "README.TXT").write_text("exported by the archive")
    found, skipped = images_in_folder(tmp_path / "export")
    assert found == files and len(found) == len(EVERY_SYNTAX)  # IM000000-style names, nested series folders
    assert all("." not in path.name for path in found)
    reasons = dict(zip(skipped["image"].map(lambda p: p.rsplit("/", 1)[-1]), skipped["reason"], strict=True))
    assert reasons["DICOMDIR"].startswith("skipped: a DICOMDIR")
    assert reasons["README.TXT"].startswith("skipped: not an image")


def test_the_header_gives_sex_and_chronological_age_dates_first(tmp_path):
    hand = (radiograph() >> 4).astype(np.uint8)
    by_dates = write_dicom(tmp_path / "a", hand, PatientSex="M", PatientBirthDate="20160301", StudyDate="20260301",
                           PatientAge="009Y")  # fmt: skip
    by_age = write_dicom(tmp_path / "b", hand, PatientSex="F", PatientAge="018M")
    unknown = write_dicom(tmp_path / "c", hand, PatientSex="O", PatientAge="garbage", StudyDate="2026")
    assert patient_fields(by_dates) == {
        "sex": "M", "chronological_age_years": pytest.approx(10.0, abs=0.01),
        "chronological_age_from": "StudyDate - PatientBirthDate",
    }  # fmt: skip
    assert patient_fields(by_age) == {
        "sex": "F",
        "chronological_age_years": 1.5,
        "chronological_age_from": "PatientAge",
    }
    assert patient_fields(unknown) == {"sex": None, "chronological_age_years": None, "chronological_age_from": None}


def test_rows_without_a_readable_image_or_a_needed_input_are_set_aside_with_the_reason(tmp_path):
    hand = (radiograph() >> 4).astype(np.uint8)
    rows = pd.DataFrame({
        "image": [str(write_dicom(tmp_path / "a", hand)), str(write_report(tmp_path / "sr")), str(tmp_path / "gone"),
                  str(write_dicom(tmp_path / "b", hand))],
        "sex": ["F", "M", "F", None],
    })  # fmt: skip
    kept, aside = set_aside_unreadable(rows, ImageLimits(), inputs=["sex"])
    assert kept["image"].tolist() == [rows["image"][0]]
    assert aside["reason"].tolist()[1:] == ["file not found", "no sex: the model takes it beside the image"]
    assert aside["reason"].iloc[0].startswith("no image in this DICOM file")
    every_image_reads = rows.iloc[[0, 3]]  # the one reason is a missing input (a lone upload to the DICOM node)
    kept, aside = set_aside_unreadable(every_image_reads, ImageLimits(), inputs=["sex"])
    assert kept["image"].tolist() == [rows["image"][0]] and aside["reason"].tolist() == [
        "no sex: the model takes it beside the image"
    ]


def test_chronological_age_outside_the_interval_is_advanced_or_delayed():
    rows = pd.DataFrame({
        "predicted_age": [10.0, 10.0, 10.0, 10.0], "lower_90": [9.0] * 4, "upper_90": [11.0] * 4,
        "chronological_age": [8.0, 10.5, 12.0, None],
    })  # fmt: skip
    compare_with_chronological(rows, "predicted_age", [0.9])
    assert rows["development_90"].tolist()[:3] == ["advanced", "within", "delayed"]
    assert pd.isna(rows["development_90"][3])  # no chronological age: no verdict
    assert rows["bone_age_minus_chronological"].tolist()[:3] == [2.0, -0.5, -2.0]
    figures = chronological_figures(rows, [0.9])
    assert figures["n"] == 3 and figures["mean"] == pytest.approx(-0.5 / 3)
    assert figures["90%"] == {"advanced": 1, "within": 1, "delayed": 1}


@pytest.mark.slow  # its loader starts worker processes
def test_training_decodes_every_image_first_and_lists_the_ones_that_do_not_read(tmp_path):
    images = tmp_path / "images"
    hand = (radiograph() >> 4).astype(np.uint8)
    names = [f"IM{index:04d}" for index in range(24)]
    for name in names:
        write_dicom(images / name, hand)
    write_colour_frames(images / "cine", np.full((3, 40, 50, 3), 90, np.uint8), RLELossless)  # reads: its first frame
    write_report(images / "report")
    (images / "cut").write_bytes((images / names[0]).read_bytes()[:-1000])
    png_bomb(images / "bomb.png", side=300)  # over the max_pixels set below
    files = [*names, "cine", "report", "cut", "bomb.png"]
    table = pd.DataFrame({"file": files, "age": [5 + i % 10 for i in range(len(files))], "patient": files})
    table.to_csv(tmp_path / "labels.csv", index=False)
    source = TableSource(
        str(tmp_path / "labels.csv"), str(images), {"image": "file", "age": "age", "subject": "patient"}
    )
    split = SubjectSplit(stratum_width=20, min_subjects_per_bin=1)
    for cache in ({"cache": True, "cache_dir": str(tmp_path / "cache")}, {"cache": False}):
        data = ImageDataModule(source, split, 16, 4, task=AgeTask(), num_workers=2, max_pixels=80_000,
                               on_bad_rows="drop", output_dir=str(tmp_path / "run"), **cache)  # fmt: skip
        data.setup()
        assert data.dropped_rows == 3 and "cine" in set(data.table["file"])
        dropped = pd.read_csv(tmp_path / "run" / "dropped_rows.csv").set_index("file")["problem"]
        assert dropped["report"].startswith("no image in this DICOM file")
        assert dropped["cut"].startswith("cannot be decoded")
        assert dropped["bomb.png"] == "too large: 90,000 pixels (300 x 300), over max_pixels=80,000"
        batch = next(iter(data.train_dataloader()))  # the loader workers meet only images that read
        assert batch["image"].shape[1:] == (1, 16, 16)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("hospital")
    result = run_cli([*TINY, "trainer.max_epochs=2", f"hydra.run.dir={root / 'run'}"], root, data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "run"


@pytest.mark.slow
def test_a_pacs_like_folder_predicts_every_image_and_lists_every_other_file(trained_run, tmp_path, data_dir):
    """The issue's case: nested extension-less DICOM in every transfer syntax, multi-frame colour, a
    truncated file, a structured report (refused by its header), a DICOMDIR, a bomb and plain hands,
    in one `predict`."""
    test_images = pd.read_csv(trained_run / "splits.csv").query("set == 'test'")["image"].head(3).tolist()
    hand = read_grayscale(test_images[0])
    folder = tmp_path / "from_pacs"
    exported = pacs_export(folder / "export", hand, PatientSex="F", PatientBirthDate="20160101", StudyDate="20260101")
    frames = np.repeat(np.dstack([hand] * 3)[None], 2, axis=0)
    cine = [write_colour_frames(folder / "us" / name, frames, syntax)
            for name, syntax in (("1.2.826.0.1.1", RLELossless), ("1.2.826.0.1.2", JPEGBaseline8Bit))]  # fmt: skip
    report = write_report(folder / "sr" / "IM000001")
    cut = folder / "cut" / "IM000009"
    cut.parent.mkdir()
    cut.write_bytes(exported[0].read_bytes()[:-2000])
    bomb = png_bomb(folder / "bomb.png", side=20000)
    for path in test_images:
        shutil.copy(path, folder)
    output = tmp_path / "ages.csv"
    result = run_cli([f"run={trained_run}", f"input={folder}", f"output={output}"], tmp_path, data_dir,
                     app="boneage.predict")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    predicted = pd.read_csv(output).set_index("image")
    unreadable = pd.read_csv(tmp_path / "ages_unreadable.csv").set_index("image")["reason"]
    every_file = {str(path) for path in folder.rglob("*") if path.is_file()}
    assert set(predicted.index) | set(unreadable.index) == every_file  # none missing
    assert not set(predicted.index) & set(unreadable.index)
    assert set(predicted.index) == {
        *map(str, exported),
        *map(str, cine),
        *(str(folder / Path(p).name) for p in test_images),
        str(report),  # answered from its header alone: a report is no radiograph
    }
    assert not predicted.at[str(report), "assessed"] and "SR" in predicted.at[str(report), "not_assessed"]
    assert predicted.loc[[str(path) for path in exported], "assessed"].all()
    assert unreadable[str(folder / "export" / "DICOMDIR")].startswith("skipped: a DICOMDIR")
    assert unreadable[str(cut)].startswith("cannot be decoded")
    assert unreadable[str(bomb)].startswith("too large")

    as_png = predicted.at[str(folder / Path(test_images[0]).name), "predicted_age"]
    dicom = predicted.loc[[str(path) for path in exported]]
    lossless = dicom["predicted_age"].iloc[: len(LOSSLESS)]  # pacs_export writes the syntaxes in EVERY_SYNTAX's order
    np.testing.assert_allclose(lossless, as_png, atol=1e-4)  # the same pixels: the same age
    np.testing.assert_allclose(dicom["predicted_age"], as_png, atol=0.5)
    assert (dicom["sex"] == "F").all() and dicom["chronological_age"].round(2).eq(10.0).all()  # from the header
    np.testing.assert_allclose(
        dicom["bone_age_minus_chronological"], dicom["predicted_age"] - dicom["chronological_age"]
    )
    assert set(dicom["development_90"]) <= {"advanced", "within", "delayed"}
    assert "bone age minus chronological age on 13 images" in result.stdout


@pytest.mark.parametrize(("limits", "message"), [
    ({"max_pixels": 0}, "max_pixels must be positive (or null: no limit), not 0"),
    ({"multi_frame": "all"}, "multi_frame must be one of ('first', 'refuse'), not 'all'"),
])  # fmt: skip
def test_a_limit_no_reader_can_apply_is_a_config_error(limits, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ImageLimits(**limits)
