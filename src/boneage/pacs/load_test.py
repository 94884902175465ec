"""How fast the node answers (`make bench`): demo radiographs sent to it as a modality sends
them, one association, and the time from each image received to its report stored by an
archive (a pynetdicom Storage SCP in this process), with the node in its own process as
`python -m boneage.pacs` runs."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import highdicom as hd
import numpy as np
import pandas as pd
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage, Verification

from boneage.serving.load_test import free_port

ARCHIVE_AET, NODE_AET = "BENCH", "BONEAGE"


def node_load_test(run_dir: Path, images: int, folder: Path, timeout_s: float = 600) -> dict[str, Any]:
    """Seconds per image over `images` demo test images (the last report stored minus the first
    image sent, over the count), and each image's seconds from receipt to report stored."""
    reports, arrived = [], threading.Event()

    def stored(event: evt.Event) -> int:
        if event.request.AffectedSOPClassUID == ComprehensiveSRStorage:
            reports.append(time.perf_counter())
            if len(reports) == images:
                arrived.set()
        return 0x0000

    archive = AE(ARCHIVE_AET)
    for kind in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
        archive.add_supported_context(kind)
    archive_port, node_port = free_port(), free_port()
    server = archive.start_server(("127.0.0.1", archive_port), block=False, evt_handlers=[(evt.EVT_C_STORE, stored)])
    queue = folder / "queue"
    archive_address = f"{ARCHIVE_AET}@127.0.0.1:{archive_port}"
    command = [sys.executable, "-m", "boneage.pacs", f"run={run_dir}", f"send_to={archive_address}",
               f"port={node_port}", f"queue={queue}", "log_level=WARNING"]  # fmt: skip
    node = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_echo(node, node_port, timeout_s)
        sent = demo_radiographs(run_dir, images)
        started = time.perf_counter()
        _send(sent, node_port)
        if not arrived.wait(timeout_s):
            raise RuntimeError(f"only {len(reports)} of {images} reports stored within {timeout_s} s")
        seconds = max(reports) - started
    finally:
        node.terminate()
        node.wait(timeout=60)
        server.shutdown()
    latency = pd.read_csv(queue / "sent.csv")["seconds_from_receipt"].tolist()
    return {
        "images": images,
        "seconds_per_image": round(seconds / images, 3),
        "first_image_s": round(latency[0], 3),  # received to stored with nothing queued before it
        "p50_s_in_queue": round(statistics.median(latency), 3),  # ...and with the burst queued ahead of it
        "max_s_in_queue": round(max(latency), 3),
    }


def demo_radiographs(run_dir: Path, count: int) -> list[Any]:
    """The run's first `count` test images as Secondary Capture objects, each of its own study,
    with the patient's sex and a birth date that gives the chronological age."""
    splits = pd.read_csv(run_dir / "splits.csv")
    rows = splits[splits["set"] == "test"].head(count)
    made = []
    for index, row in enumerate(rows.itertuples()):
        pixels = cv2.imread(str(row.image), cv2.IMREAD_GRAYSCALE)
        made.append(hd.sc.SCImage(
            pixel_array=np.ascontiguousarray(pixels), photometric_interpretation="MONOCHROME2", bits_allocated=8,
            coordinate_system="PATIENT", patient_orientation=("L", "F"), study_instance_uid=hd.UID(),
            series_instance_uid=hd.UID(), series_number=1, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="boneage bench", patient_id=f"B{index:03d}", patient_sex=str(row.sex),
            patient_birth_date=f"{2026 - round(row.age)}0101", study_date="20260101",
        ))  # fmt: skip
    return made


def _send(documents: list[Any], port: int) -> None:
    modality = AE("MODALITY")
    modality.add_requested_context(SecondaryCaptureImageStorage)
    association = modality.associate("127.0.0.1", port, ae_title=NODE_AET)
    if not association.is_established:
        raise RuntimeError(f"the node on port {port} refused the association")
    for document in documents:
        status = association.send_c_store(document)
        if int(status.get("Status", -1)) != 0:
            raise RuntimeError(f"the node answered C-STORE with {status.get('Status')}")
    association.release()


def answers_echo(port: int, calling: str = "MODALITY") -> bool:
    """Whether the node on `port` of 127.0.0.1 accepts `calling` and answers its C-ECHO."""
    caller = AE(calling)
    caller.add_requested_context(Verification)
    association = caller.associate("127.0.0.1", port, ae_title=NODE_AET)
    if not association.is_established:
        return False
    answered = association.send_c_echo()
    association.release()
    return int(answered.get("Status", -1)) == 0


def _wait_for_echo(node: subprocess.Popen, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(f"boneage.pacs did not start: {node.stderr.read()[-2000:]}")
        if answers_echo(port):
            return
        time.sleep(0.5)
    raise RuntimeError(f"boneage.pacs did not answer C-ECHO within {timeout_s} s")
