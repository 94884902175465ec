"""Files from outside, taken in: a folder as a PACS or a hospital export lays it out, and rows
whose image cannot be used set aside with the reason, so one bad file never stops a batch.

Exports name DICOM files `IM000001`, by UID or by nothing at all, in nested series folders, with
a DICOMDIR index beside them: a file is an image by its suffix or by its DICOM marker, and every
other file is reported with the reason it was skipped, never silently left out.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from boneage.config.errors import DataError
from boneage.datamodules.images import IMAGE_SUFFIXES, ImageLimits, is_dicom, is_dicomdir, unreadable_images

CHECK_THREADS = 2  # files decoded at once to check them (the decoders release the GIL)


def images_in_folder(folder: Path) -> tuple[list[Path], pd.DataFrame]:
    """Every image file under `folder` (searched recursively), and the skipped files with their
    reason (columns image, reason)."""
    images, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if is_dicom(path):
            if is_dicomdir(path):
                skipped.append((str(path), "skipped: a DICOMDIR (the export's index of its files, not an image)"))
            else:
                images.append(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            skipped.append((str(path), f"skipped: not an image ({', '.join(IMAGE_SUFFIXES)} or a DICOM marker)"))
    return images, pd.DataFrame(skipped, columns=["image", "reason"])


def set_aside_unreadable(
    rows: pd.DataFrame, limits: ImageLimits, stop_at_first: bool = False, inputs: list[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows whose image reads within `limits` and which have every model input (`inputs`,
    e.g. sex), and the others with the reason (columns image, reason). `stop_at_first`: an
    unreadable image stops everything instead, naming it."""
    unreadable = unreadable_images(rows["image"].tolist(), limits, CHECK_THREADS)
    reasons = rows["image"].map(unreadable).astype(object)  # strings go in below, also where every image read
    if unreadable and stop_at_first:
        first = rows.index[reasons.notna()][0]
        raise DataError(
            f"{rows.at[first, 'image']}: {reasons[first]} ({len(unreadable)} unreadable image(s) in all). "
            "on_unreadable=skip predicts the others and lists these."
        )
    for name in inputs:
        if name not in rows:
            raise DataError(
                f"The model takes {name!r} beside each image, and no column {name!r} came with the images "
                "(give a table with that column; DICOM headers give sex as PatientSex)."
            )
        missing = reasons.isna() & rows[name].isna()
        reasons[missing] = f"no {name}: the model takes it beside the image"
    bad = reasons.notna()
    return rows[~bad], pd.DataFrame({"image": rows.loc[bad, "image"], "reason": reasons[bad]})
