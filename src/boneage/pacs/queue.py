"""The node's folder of work, which survives a crash: nothing is acknowledged before it is on
disk, and every step is a rename, so a `kill -9` at any moment leaves each image in exactly
one place.

    incoming/<SOP Instance UID>.dcm   received; the C-STORE is answered Success only after this
                                      file (and its folder entry) reached the disk
    outgoing/<SOP Instance UID>/      the image (source.dcm) with its results (sr.dcm, sc.dcm),
                                      waiting for the archive to take them
    failed/<SOP Instance UID>/        what failed for good: the same files, and reason.txt
    sent.csv                          one line per image whose results the archive took
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from pydicom.dataset import Dataset

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # the only names the queue writes: no path can be smuggled in
SENT_COLUMNS = ("stored_at", "source", "assessed", "reason", "results", "seconds_from_receipt")
SOURCE = "source.dcm"
OUTCOME = "outcome.json"  # what the node said of the image: {"assessed": ..., "reason": ...}
BUILDING = ".building"  # an outgoing folder being written; a leftover one (a crash) is rebuilt


class WorkQueue:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming, self.outgoing, self.failed = root / "incoming", root / "outgoing", root / "failed"
        for folder in (self.incoming, self.outgoing, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.outgoing.glob(f"*{BUILDING}"):  # results half-written when the node died
            shutil.rmtree(leftover)
        for leftover in self.incoming.glob(".*.part"):  # an image half-received: never acknowledged
            leftover.unlink()

    def accept(self, uid: str, encoded: bytes) -> Path:
        """Writes a received object durably (file and folder entry synced) before it is answered."""
        if not UID.match(uid):
            raise ValueError(f"{uid!r} is not a DICOM UID")
        part, path = self.incoming / f".{uid}.part", self.incoming / f"{uid}.dcm"
        with open(part, "wb") as file:
            file.write(encoded)
            file.flush()
            os.fsync(file.fileno())
        os.replace(part, path)
        _sync_folder(self.incoming)
        return path

    def received(self) -> list[Path]:
        """Images waiting to be assessed, oldest first."""
        return sorted(self.incoming.glob("*.dcm"), key=_modified)

    def ready(self) -> list[Path]:
        """Outgoing folders waiting for the archive, oldest first."""
        return sorted((path for path in self.outgoing.iterdir() if not path.name.endswith(BUILDING)), key=_modified)

    def hand_over(self, image: Path, results: dict[str, Dataset], outcome: dict[str, object]) -> Path:
        """Moves a received image, with its results and `outcome` written beside it, to
        outgoing; the same image built again (a crash after this) is built into the same UIDs."""
        uid = image.stem
        building = self.outgoing / f"{uid}{BUILDING}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        for name, document in results.items():
            document.save_as(building / f"{name}.dcm", enforce_file_format=True)
        (building / OUTCOME).write_text(json.dumps(outcome))
        os.replace(image, building / SOURCE)  # keeps the time it was received (its mtime)
        done = self.outgoing / uid
        if done.exists():  # the same image sent again before its first results left: the newest wins
            shutil.rmtree(done)
        os.replace(building, done)
        _sync_folder(self.outgoing)
        return done

    def fail(self, item: Path, reason: str) -> Path:
        """Keeps an image (and any results) that failed for good in failed/, with the reason."""
        uid = item.stem if item.is_file() else item.name
        kept = self.failed / uid
        shutil.rmtree(kept, ignore_errors=True)
        if item.is_file():
            kept.mkdir()
            os.replace(item, kept / SOURCE)
        else:
            os.replace(item, kept)
        (kept / "reason.txt").write_text(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {reason}\n")
        return kept

    def sent(self, item: Path) -> None:
        """Records results the archive took, then drops the folder."""
        outcome = json.loads((item / OUTCOME).read_text())
        log = self.root / "sent.csv"
        new = not log.exists()
        results = sorted(path.stem for path in item.glob("*.dcm") if path.name != SOURCE)
        with open(log, "a", newline="") as file:
            writer = csv.writer(file)
            if new:
                writer.writerow(SENT_COLUMNS)
            now = time.time()
            stored = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
            waited = f"{now - _modified(item / SOURCE):.3f}"
            row = [stored, item.name, outcome["assessed"], outcome["reason"] or "", "+".join(results), waited]
            writer.writerow(row)
        shutil.rmtree(item)

    def documents(self, item: Path) -> Iterator[Path]:
        """The results in an outgoing folder, the report first."""
        results = (path for path in item.glob("*.dcm") if path.name != SOURCE)
        yield from sorted(results, key=lambda path: path.name != "sr.dcm")


def _modified(path: Path) -> float:
    return path.stat().st_mtime


def _sync_folder(folder: Path) -> None:
    """A rename reaches the disk only when its folder is synced."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
