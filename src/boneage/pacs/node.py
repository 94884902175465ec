"""The DICOM node: a C-STORE and C-ECHO SCP (pynetdicom) in front of the work queue, one thread
that assesses what arrived, and one that sends the results to the archive until it takes them.

Receiving never waits for the model, and the model never waits for the archive: an archive
that is down only grows `outgoing/`, and the images keep being answered Success once they are
on disk.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from boneage.pacs.assessment import Assessment, Assessor
from boneage.pacs.capture import picture, secondary_capture
from boneage.pacs.destinations import Destination, StoreFailed
from boneage.pacs.identity import NodeIdentity
from boneage.pacs.queue import UID, WorkQueue
from boneage.pacs.report import structured_report

log = logging.getLogger("boneage.pacs")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # the node's disk is full: the modality sends again later
NOT_UNDERSTOOD = 0xC210  # the data set cannot be parsed (garbage on an association)
NO_STUDY = 0xA900  # Data Set does not match SOP Class: no study or instance UID to answer into


@dataclass
class Retry:
    """How the sender waits between tries: from `initial_s`, doubling, at most `max_s`; an
    archive that refuses an object (not down: refuses it) gets `max_refusals` tries."""

    initial_s: float = 2.0
    max_s: float = 300.0
    max_refusals: int = 5


class Node:
    def __init__(
        self, assessor: Assessor, identity: NodeIdentity, queue: WorkQueue, destination: Destination,
        secondary_capture: bool, retry: Retry,
    ) -> None:  # fmt: skip
        self.assessor, self.identity, self.queue, self.destination = assessor, identity, queue, destination
        self.with_capture, self.retry = secondary_capture, retry
        self.stopping = threading.Event()
        self._arrived, self._built = threading.Event(), threading.Event()
        self._arrived.set(), self._built.set()  # a restart first works through what is already queued
        self._server = None
        self._threads = [threading.Thread(target=self._assess_loop, name="assess", daemon=True),
                         threading.Thread(target=self._send_loop, name="send", daemon=True)]  # fmt: skip

    # --- receiving ---------------------------------------------------------------------------
    def start(self, host: str, port: int, ae_title: str, allowed_callers: list[str]) -> None:
        ae = AE(ae_title)
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:  # a CT or an SR too: each gets its "not assessed"
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.require_calling_aet = allowed_callers
        ae.maximum_associations = 16
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, lambda event: SUCCESS)]
        self._server = ae.start_server((host, port), block=False, evt_handlers=handlers)
        for thread in self._threads:
            thread.start()

    def _on_store(self, event: evt.Event) -> int:
        """Success only once the object is on disk; garbage gets a failure status, never a crash."""
        try:
            dataset = event.dataset
            uid, study = str(dataset.SOPInstanceUID), str(dataset.get("StudyInstanceUID", ""))
        except Exception as error:
            log.warning("refused a C-STORE from %s: cannot be parsed (%s)", _caller(event), error)
            return NOT_UNDERSTOOD
        if not UID.match(uid) or not UID.match(study):
            log.warning("refused a C-STORE from %s: no valid SOP Instance or Study Instance UID", _caller(event))
            return NO_STUDY
        try:
            self.queue.accept(uid, event.encoded_dataset())
        except OSError as error:  # a full or failing disk: not Success, so the sender keeps the image
            log.error("could not queue %s: %s", uid, error)
            return OUT_OF_RESOURCES
        log.info("received %s from %s", uid, _caller(event))
        self._arrived.set()
        return SUCCESS

    # --- assessing ---------------------------------------------------------------------------
    def _assess_loop(self) -> None:
        while not self.stopping.is_set():
            self._arrived.wait(1.0)
            self._arrived.clear()
            for image in self.queue.received():
                if self.stopping.is_set():
                    return
                self._assess(image)

    def _assess(self, image: Path) -> None:
        try:
            source = pydicom.dcmread(image, stop_before_pixels=True)
            assessment = self.assessor.assess(image)
            results = {"sr": structured_report(source, assessment, self.identity)}
            if self.with_capture and assessment.assessed:
                results["sc"] = secondary_capture(source, picture(self.assessor.member, image), assessment,
                                                  self.identity)  # fmt: skip
        except Exception as error:
            log.exception("could not build the results of %s", image.name)
            self.queue.fail(image, f"could not build its results: {type(error).__name__}: {error}")
            return
        if assessment.assessed:
            log.info("%s: bone age %.1f months", image.stem, assessment.bone_age)
        else:
            log.info("%s: %s", image.stem, assessment.reason)
        self.queue.hand_over(image, results, _outcome(assessment))
        self._built.set()

    # --- sending -----------------------------------------------------------------------------
    def _send_loop(self) -> None:
        delay, refusals = self.retry.initial_s, 0
        while not self.stopping.is_set():
            self._built.wait(1.0)
            self._built.clear()
            for item in self.queue.ready():
                if self.stopping.is_set():
                    return
                try:
                    self.destination.store([pydicom.dcmread(path) for path in self.queue.documents(item)])
                except StoreFailed as failure:
                    refusals += not failure.transient
                    if refusals >= self.retry.max_refusals:
                        kept = self.queue.fail(item, f"the archive refused it {refusals} times: {failure}")
                        log.error("gave up on %s: %s (kept in %s)", item.name, failure, kept)
                        delay, refusals = self.retry.initial_s, 0
                        continue
                    log.warning("%s; trying again in %.0f s", failure, delay)
                    self.stopping.wait(delay)
                    delay = min(2 * delay, self.retry.max_s)
                    self._built.set()  # go round again, oldest first
                    break
                self.queue.sent(item)
                log.info("stored the results of %s in %s", item.name, self.destination)
                delay, refusals = self.retry.initial_s, 0

    def stop(self) -> None:
        """Stops receiving, lets the current image finish; what is queued waits for the next start."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=60)


def _outcome(assessment: Assessment) -> dict[str, object]:
    return {"assessed": assessment.assessed, "reason": assessment.reason}


def _caller(event: evt.Event) -> str:
    requestor = event.assoc.requestor
    return f"{requestor.ae_title}@{requestor.address}"
