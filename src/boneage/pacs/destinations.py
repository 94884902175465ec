"""Where results go: an archive's DICOM port (C-STORE, pynetdicom) or its DICOMweb service
(STOW-RS, dicomweb-client). Each answers one question, `store`: taken, or why not, and whether
trying again later can help (an archive that is down, busy or full) or cannot (it refuses the
object itself)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage
from pynetdicom.status import code_to_category

from boneage.config.errors import ConfigError

SENT_CLASSES = (ComprehensiveSRStorage, SecondaryCaptureImageStorage)
TRANSIENT_STATUSES = range(0xA700, 0xA800)  # Refused: Out of Resources (a full or busy archive)
DIMSE_ADDRESS = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d+)$")


class StoreFailed(Exception):
    """The archive did not take an object; `transient`: it may later (down, busy, full)."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Destination(Protocol):
    def store(self, documents: list[Dataset]) -> None:
        """Stores every document or raises StoreFailed."""


@dataclass
class DimseDestination:
    """An archive's C-STORE SCP, called as `calling_ae`."""

    ae_title: str
    host: str
    port: int
    calling_ae: str
    timeout_s: float = 30

    def store(self, documents: list[Dataset]) -> None:
        ae = AE(self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        for kind in SENT_CLASSES:
            ae.add_requested_context(kind)
        association = ae.associate(self.host, self.port, ae_title=self.ae_title)
        if not association.is_established:
            raise StoreFailed(f"no association with {self}: refused, or nobody listens", transient=True)
        try:
            for document in documents:
                status = association.send_c_store(document)
                if "Status" not in status:  # no answer: the connection broke or timed out
                    raise StoreFailed(f"{self} did not answer the C-STORE", transient=True)
                code = int(status.Status)
                if code_to_category(code) not in ("Success", "Warning"):
                    message = f"{self} answered C-STORE of {document.SOPInstanceUID} with status 0x{code:04X}"
                    raise StoreFailed(message, transient=code in TRANSIENT_STATUSES)
        finally:
            association.release()

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass
class DicomWebDestination:
    """An archive's DICOMweb service (its base URL, e.g. http://host:8042/dicom-web)."""

    url: str
    timeout_s: float = 30

    def store(self, documents: list[Dataset]) -> None:
        session = requests.Session()
        session.request = _with_timeout(session.request, self.timeout_s)
        client = DICOMwebClient(self.url, session=session)
        try:
            answer = client.store_instances(documents)
        except requests.HTTPError as error:  # 4xx: the archive refuses these objects; 5xx: it may take them later
            status = error.response.status_code if error.response is not None else 0
            raise StoreFailed(f"STOW-RS to {self.url} answered HTTP {status}", transient=status >= 500) from error
        except requests.RequestException as error:
            raise StoreFailed(f"STOW-RS to {self.url}: {type(error).__name__}", transient=True) from error
        if failed := answer.get("FailedSOPSequence"):  # 202: some taken, these refused
            reasons = ", ".join(f"0x{int(item.get('FailureReason', 0)):04X}" for item in failed)
            raise StoreFailed(f"STOW-RS to {self.url} refused {len(failed)} object(s) (reasons {reasons})", False)

    def __str__(self) -> str:
        return self.url


def destination_of(send_to: str, calling_ae: str, timeout_s: float) -> Destination:
    """`send_to`: AET@host:port (DIMSE) or an http(s) DICOMweb base URL."""
    if send_to.startswith(("http://", "https://")):
        return DicomWebDestination(send_to.rstrip("/"), timeout_s)
    if match := DIMSE_ADDRESS.match(send_to):
        return DimseDestination(match["ae"], match["host"], int(match["port"]), calling_ae, timeout_s)
    raise ConfigError(
        f"send_to={send_to!r} is neither AET@host:port (e.g. ORTHANC@127.0.0.1:4242) nor a DICOMweb URL "
        "(e.g. http://127.0.0.1:8042/dicom-web)."
    )


def _with_timeout(request, timeout_s: float):
    """requests has no session-wide timeout: each of the client's requests gets one."""

    def timed(*args, **kwargs):
        kwargs.setdefault("timeout", timeout_s)
        return request(*args, **kwargs)

    return timed
