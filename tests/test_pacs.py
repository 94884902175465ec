"""The DICOM node against what a hospital runs: a real Orthanc that routes studies sent by
DCMTK's storescu to the node, reports read back from the archive and judged by dicom3tools'
dciodvfy, an archive outage with the node killed mid-stream, STOW-RS to Orthanc's DICOMweb
plugin, and callers that are unknown or send garbage."""

from __future__ import annotations

import io
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pandas as pd
import pydicom
import pydicom.data
import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, JPEGLosslessSV1
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage, DigitalXRayImageStorageForPresentation

from boneage.config.errors import ConfigError
from boneage.evaluation.ensemble import load_members
from boneage.pacs.__main__ import check_exposure
from boneage.pacs.assessment import Assessment
from boneage.pacs.destinations import destination_of
from boneage.pacs.identity import NodeIdentity, derived_uid
from boneage.pacs.load_test import answers_echo
from boneage.pacs.queue import WorkQueue
from boneage.pacs.report import FINDINGS, report_values, structured_report
from boneage.predict import predict
from boneage.serving.load_test import free_port
from tests.dicom_files import dataset, radiograph, write_dicom
from tests.helpers import cli_environment, compose_app
from tests.orthanc import NODE_AET, Orthanc, dcmtk, unavailable

SYNTAXES = {ExplicitVRLittleEndian: [], JPEGLosslessSV1: ["-xs"]}  # storescu's option to propose each
IDENTITY = NodeIdentity("demo/2026-12-05_14-11-59", "epoch006-val_mae1.0528.ckpt", "0123456789ab")


def dciodvfy_errors(path: Path) -> list[str]:
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]


def hands(run: Path, folder: Path, count: int, first: int = 0) -> list[Path]:
    """Demo test hands as DICOM DX files, each in one of the lossless syntaxes archives use,
    with the patient's sex and birth date in the header (the chronological age)."""
    splits = pd.read_csv(run / "splits.csv")
    rows = splits[splits["set"] == "test"].iloc[first : first + count]
    written = []
    for index, row in enumerate(rows.itertuples()):
        pixels = cv2.imread(row.image, cv2.IMREAD_GRAYSCALE)
        birth = 2026 - round(row.age)
        header = {"PatientSex": row.sex, "PatientBirthDate": f"{birth}0101", "PatientID": f"P{first + index}"}
        syntax = list(SYNTAXES)[index % len(SYNTAXES)]
        written.append(write_dicom(folder / f"hand{first + index:03d}.dcm", pixels, syntax, **header))
    return written


def storescu(files: list[Path], port: int, called: str) -> None:
    """DCMTK's storescu sends `files` as a modality does, one association per transfer syntax."""
    by_syntax: dict[str, list[Path]] = {}
    for file in files:
        syntax = pydicom.dcmread(file, stop_before_pixels=True).file_meta.TransferSyntaxUID
        by_syntax.setdefault(syntax, []).append(file)
    for syntax, group in by_syntax.items():
        options = SYNTAXES.get(syntax, [])
        sent = subprocess.run([dcmtk("storescu"), *options, "-aet", "MODALITY", "-aec", called, "127.0.0.1", str(port),
                               *map(str, group)], capture_output=True, text=True)  # fmt: skip
        assert sent.returncode == 0 and "E:" not in sent.stderr + sent.stdout, sent.stderr[-2000:]


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s: {what}")


class NodeProcess:
    """`python -m boneage.pacs` as the README runs it, in its own process."""

    def __init__(self, run: Path, send_to: str, queue: Path, port: int, data_dir: Path, extra: list[str] = ()) -> None:
        self.data_dir = data_dir
        self.args = [f"run={run}", f"send_to={send_to}", f"queue={queue}", f"port={port}", "retry_initial_s=0.5",
                     "retry_max_s=2", *extra]  # fmt: skip
        self.port, self.log = port, queue.with_suffix(".log")
        self.process: subprocess.Popen | None = None

    def start(self) -> NodeProcess:
        log = open(self.log, "a")  # noqa: SIM115 - the node writes it while it runs
        self.process = subprocess.Popen([sys.executable, "-m", "boneage.pacs", *self.args], stdout=log, stderr=log,
                                        env=cli_environment(self.data_dir))  # fmt: skip
        wait_for(
            lambda: self.process.poll() is None and answers_echo(self.port),
            180,
            f"the node answering C-ECHO ({self.log})",
        )
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)


# --- the report, the queue and the settings, without daemons -----------------------------------
def source_image(tmp_path: Path) -> Dataset:
    path = write_dicom(tmp_path / "hand.dcm", radiograph(), PatientSex="F", PatientBirthDate="20160101")
    return pydicom.dcmread(path)


@pytest.mark.slow(seconds=5)  # runs dciodvfy
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools is not installed")
@pytest.mark.parametrize("assessed", [True, False], ids=["assessed", "not-assessed"])
def test_a_report_passes_dciodvfy_says_its_values_and_is_the_same_object_when_built_again(tmp_path, assessed):
    source = source_image(tmp_path)
    answer = Assessment(sex="F", bone_age=130.5, lower=118.0, upper=143.0, level=0.9, chronological_age=120.0,
                        difference=10.5, finding="within")  # fmt: skip
    refused = Assessment("not assessed: modality CT cannot be a hand radiograph", sex="F")
    report = structured_report(source, answer if assessed else refused, IDENTITY)
    report.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []
    values = report_values(report)
    if assessed:
        assert values["XR Bone age"] == 130.5 and values["Age"] == 120.0
        assert values["Bone age minus chronological age"] == 10.5 and values["Finding"] == "Bone age within interval"
        assert (values["Lower limit of prediction interval"], values["Upper limit of prediction interval"]) == (
            118,
            143,
        )
    else:
        assert "XR Bone age" not in values and values["Finding"] == "Not assessed"
        assert values["Comment"] == refused.reason
    assert values["Patient sex"] == "Female" and values["Algorithm Parameters"] == "config_hash=0123456789ab"
    assert report.StudyInstanceUID == source.StudyInstanceUID and report.SeriesInstanceUID != source.SeriesInstanceUID
    again = structured_report(source, answer if assessed else refused, IDENTITY)  # a retry, a restart
    assert again.SOPInstanceUID == report.SOPInstanceUID and again.SeriesInstanceUID == report.SeriesInstanceUID


def test_the_queue_drops_what_a_crash_left_half_written_and_keeps_failures_with_their_reason(tmp_path):
    queue = WorkQueue(tmp_path / "queue")
    image = queue.accept("1.2.3", b"received")
    (queue.incoming / ".1.2.4.part").write_bytes(b"half received, never acknowledged")
    (queue.outgoing / "1.2.5.building").mkdir()
    queue = WorkQueue(tmp_path / "queue")  # a restart
    assert queue.received() == [image] and queue.ready() == []
    kept = queue.fail(image, "could not build its results: ValueError: no pixels")
    assert (kept / "source.dcm").read_bytes() == b"received"
    assert "no pixels" in (kept / "reason.txt").read_text()
    with pytest.raises(ValueError, match="not a DICOM UID"):
        queue.accept("../../etc/passwd", b"")


def test_a_node_off_loopback_needs_allowed_callers_and_send_to_is_checked():
    cfg = compose_app("pacs", ["run=somewhere", "send_to=ORTHANC@127.0.0.1:4242", "host=0.0.0.0"])
    with pytest.raises(ConfigError, match="allowed_callers"):
        check_exposure(cfg)
    check_exposure(compose_app("pacs", ["run=x", "send_to=A@h:1", "host=0.0.0.0", "allowed_callers=[ORTHANC]"]))
    check_exposure(compose_app("pacs", ["run=x", "send_to=A@h:1"]))  # loopback: the default
    with pytest.raises(ConfigError, match="AET@host:port"):
        destination_of("ORTHANC:4242", NODE_AET, 5)


# --- against a real Orthanc ------------------------------------------------------------------
@pytest.fixture(scope="module")
def archive(tmp_path_factory, data_dir, make_train_run):
    """The demo model, a running Orthanc routing to the node, and the node itself."""
    if reason := unavailable():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("pacs")
    run = make_train_run
    node_port = free_port()
    orthanc = Orthanc(root / "orthanc", node_port)
    (root / "orthanc").mkdir()
    try:
        orthanc.start()
    except RuntimeError as error:
        pytest.skip(f"Orthanc did not start here: {error}")
    node = NodeProcess(
        run, orthanc.address, root / "queue", node_port, data_dir, ["allowed_callers=[ORTHANC,MODALITY]"]
    )
    node.start()
    yield run, orthanc, node, root
    node.stop()
    orthanc.stop()


@pytest.mark.slow(seconds=200)
def test_studies_routed_by_orthanc_come_back_as_reports_equal_to_predict_that_pass_dciodvfy(archive):
    run, orthanc, _, root = archive
    assert requests.post(f"{orthanc.url}/modalities/{NODE_AET}/echo", data="{}", timeout=30).ok  # README's check
    sent = hands(run, root / "hands", 8)
    ct = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    no_pixels = dataset((96, 72), ExplicitVRLittleEndian, 16, PatientSex="F")  # a DX header, its pixels lost
    no_pixels.save_as(root / "no_pixels.dcm", enforce_file_format=True)
    others = [ct, root / "no_pixels.dcm"]
    started = time.monotonic()
    storescu([*sent, *others], orthanc.dicom_port, "ORTHANC")
    wait_for(lambda: len(orthanc.instances("SR")) == len(sent) + len(others), 120, "a report for every image sent")
    seconds = time.monotonic() - started

    predicted = predict(compose_app("predict", [f"run={run}", f"input={root / 'hands'}", f"output={root / 'p.csv'}"]))
    expected = pd.read_csv(predicted).set_index(pd.read_csv(predicted)["image"].map(lambda p: Path(p).name))
    reports, pictures = {}, 0
    for uid in orthanc.instances("SR"):
        path = root / f"sr_{uid}.dcm"
        path.write_bytes(orthanc.file_of(uid))
        assert dciodvfy_errors(path) == [], path
        report = pydicom.dcmread(path)
        source = report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        reports[source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID] = report
    for file in sent:
        image = pydicom.dcmread(file, stop_before_pixels=True)
        report, row = reports[image.SOPInstanceUID], expected.loc[file.name]
        values = report_values(report)
        assert report.StudyInstanceUID == image.StudyInstanceUID
        assert values["Patient sex"] == {"F": "Female", "M": "Male"}[image.PatientSex]
        if row["assessed"]:
            pictures += 1
            assert values["XR Bone age"] == pytest.approx(12 * row["predicted_age"], abs=1e-4)
            assert values["Lower limit of prediction interval"] == pytest.approx(12 * row["lower_90"], abs=1e-4)
            assert values["Age"] == pytest.approx(12 * row["chronological_age"], abs=1e-4)
            assert values["Finding"] == FINDINGS[row["development_90"]].meaning
        else:
            assert "XR Bone age" not in values and values["Comment"] == row["not_assessed"]
    for other, why in zip(others, ("modality CT", "no pixel data in this DICOM file"), strict=True):
        refused = report_values(reports[pydicom.dcmread(other).SOPInstanceUID])
        assert "XR Bone age" not in refused and why in refused["Comment"] and refused["Finding"] == "Not assessed"
    captures = orthanc.instances("OT")
    assert len(captures) == pictures and expected["assessed"].sum() >= 6  # a Secondary Capture per assessed image
    for uid in captures:
        (root / "sc.dcm").write_bytes(orthanc.file_of(uid))
        assert dciodvfy_errors(root / "sc.dcm") == []
    count = len(sent) + len(others)
    print(f"round trip: {count} images, {seconds / count:.2f} s per image, {len(reports)} reports, 0 dciodvfy errors")


@pytest.mark.slow(seconds=240)
def test_an_archive_outage_and_a_killed_node_lose_no_image_and_send_no_second_report(archive):
    run, orthanc, node, root = archive
    before = set(orthanc.instances("SR"))
    sent = hands(run, root / "outage", 10, first=20)
    orthanc.stop()  # the archive goes down; a modality keeps sending straight to the node
    storescu(sent, node.port, NODE_AET)
    queue = root / "queue"
    wait_for(lambda: len(list((queue / "outgoing").iterdir())) >= 3, 60, "some results built, waiting for the archive")
    node.kill()  # kill -9, mid-stream: some images assessed, others still in incoming
    node.start()
    orthanc.start()
    wait_for(lambda: len(set(orthanc.instances("SR")) - before) == len(sent), 180, "every report after the outage")
    new = set(orthanc.instances("SR")) - before
    assert new == {derived_uid(pydicom.dcmread(file).SOPInstanceUID, node_identity(run), "sr") for file in sent}
    assert not list((queue / "failed").iterdir()) and not list((queue / "incoming").glob("*.dcm"))
    print(f"outage: {len(sent)} images sent while the archive was down and the node killed; 0 lost")


@pytest.mark.slow(seconds=60)
def test_what_the_archive_refuses_for_good_is_kept_with_its_reason(archive, tmp_path, data_dir):
    run = archive[0]
    refusing = AE("REFUSING")
    refusing.add_supported_context(ComprehensiveSRStorage)
    refusing_port, port = free_port(), free_port()
    server = refusing.start_server(("127.0.0.1", refusing_port), block=False,
                                   evt_handlers=[(evt.EVT_C_STORE, lambda event: 0xA900)])  # fmt: skip
    node = NodeProcess(run, f"REFUSING@127.0.0.1:{refusing_port}", tmp_path / "queue", port, data_dir,
                       ["secondary_capture=false", "max_refusals=2"])  # fmt: skip
    try:
        node.start()
        (hand,) = hands(run, tmp_path, 1, first=50)
        storescu([hand], port, NODE_AET)
        kept = tmp_path / "queue" / "failed" / pydicom.dcmread(hand).SOPInstanceUID
        wait_for(lambda: (kept / "reason.txt").is_file(), 60, "the refused results kept in failed/")
    finally:
        node.stop()
        server.shutdown()
    assert "refused it 2 times" in (kept / "reason.txt").read_text() and "0xA900" in (kept / "reason.txt").read_text()
    assert {path.name for path in kept.iterdir()} >= {"source.dcm", "sr.dcm", "reason.txt"}


def node_identity(run: Path) -> NodeIdentity:
    return NodeIdentity.of(load_members(str(run), None, None))


@pytest.mark.slow(seconds=60)
def test_unknown_callers_are_rejected_and_garbage_gets_a_failure_status_not_a_crash(archive, tmp_path):
    _, _, node, _ = archive
    assert not answers_echo(node.port, calling="INTRUDER")
    with socket.create_connection(("127.0.0.1", node.port)) as raw:
        raw.sendall(b"\x01\x00" + b"\xff" * 4096)  # not a DICOM association at all
    header = dataset((8, 8), ExplicitVRLittleEndian, 8)  # a valid file meta and SOP UIDs, then junk
    written = io.BytesIO()
    written.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(written, header.file_meta)
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        value = getattr(header, keyword).encode() + b"\x00" * (len(getattr(header, keyword)) % 2)
        written.write(struct.pack("<HH2sH", 0x0008, {"SOPClassUID": 0x16, "SOPInstanceUID": 0x18}[keyword], b"UI",
                                  len(value)) + value)  # fmt: skip
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(written.getvalue() + struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 0xFFF0) + b"\xde\xad" * 9)
    ae = AE("MODALITY")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation)
    association = ae.associate("127.0.0.1", node.port, ae_title=NODE_AET)
    status = association.send_c_store(garbage)
    association.release()
    assert int(status.Status) in (0xC210, 0xA900)  # cannot understand, or no study to answer into
    assert answers_echo(node.port) and node.process.poll() is None


@pytest.mark.slow(seconds=120)
def test_results_are_stored_by_stow_rs_in_orthancs_dicomweb(archive, tmp_path, data_dir):
    run, orthanc, _, _ = archive
    port = free_port()
    web = NodeProcess(run, f"{orthanc.url}/dicom-web", tmp_path / "queue", port, data_dir, ["secondary_capture=false"])
    web.start()
    try:
        (hand,) = hands(run, tmp_path, 1, first=40)
        storescu([hand], port, NODE_AET)
        expected = derived_uid(pydicom.dcmread(hand).SOPInstanceUID, node_identity(run), "sr")
        wait_for(lambda: expected in orthanc.instances("SR"), 120, "the report stored by STOW-RS")
    finally:
        web.stop()
