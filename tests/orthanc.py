"""A real Orthanc (Debian's `orthanc`, with `orthanc-dicomweb`) on loopback for the node's
tests, routing every image a modality sends it to the boneage node as a hospital's archive
does; and DCMTK's own tools (not pynetdicom's same-named apps, which the venv puts first)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from boneage.serving.load_test import free_port

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ROUTING = Path(__file__).resolve().parents[1] / "scripts" / "orthanc_routing.lua"  # README's routing rule
NODE_AET = "BONEAGE"


def dcmtk(tool: str) -> str | None:
    """`tool` from the system (DCMTK's storescu, not the venv's pynetdicom app of that name)."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(part for part in os.environ.get("PATH", "").split(os.pathsep) if part != venv_bin)
    return shutil.which(tool, path=path)


def unavailable() -> str | None:
    """Why the archive tests cannot run here (None: they can)."""
    missing = [name for name in ("Orthanc", "storescu", "dciodvfy") if dcmtk(name) is None]
    if missing or not DICOMWEB_PLUGIN.is_file():
        return f"missing {missing or 'orthanc-dicomweb'}: apt-get install -y orthanc orthanc-dicomweb dcmtk dicom3tools"
    return None


@dataclass
class Orthanc:
    folder: Path
    node_port: int
    http_port: int = 0
    dicom_port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def address(self) -> str:
        """What the node's send_to names."""
        return f"ORTHANC@127.0.0.1:{self.dicom_port}"

    def start(self) -> Orthanc:
        """Starts it (again, with the same storage and ports after a stop) and waits until it answers."""
        self.http_port = self.http_port or free_port()
        self.dicom_port = self.dicom_port or free_port()
        config = {
            "Name": "boneage-test", "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "LuaScripts": [str(ROUTING)], "UnknownSopClassAccepted": True,
            "StableAge": 1,
        }  # fmt: skip
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - the daemon writes it while it runs
        self.process = subprocess.Popen(
            [shutil.which("Orthanc"), str(self.folder / "orthanc.json")], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/system", timeout=1).ok:
                    return self.declare_node()
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not start: {(self.folder / 'orthanc.log').read_text()[-2000:]}")

    def declare_node(self) -> Orthanc:
        """The node as a DICOM modality of the archive, as README's command declares it."""
        node = {"AET": NODE_AET, "Host": "127.0.0.1", "Port": self.node_port}
        requests.put(f"{self.url}/modalities/{NODE_AET}", json=node, timeout=10).raise_for_status()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def instances(self, modality: str) -> list[str]:
        """The SOP Instance UIDs of every object of `modality` the archive holds."""
        found = requests.post(f"{self.url}/tools/find", json={"Level": "Instance", "Query": {"Modality": modality},
                                                              "Expand": True}, timeout=10).json()  # fmt: skip
        return [item["MainDicomTags"]["SOPInstanceUID"] for item in found]

    def file_of(self, sop_instance_uid: str) -> bytes:
        """The stored file of one instance, as a viewer would fetch it."""
        found = requests.post(f"{self.url}/tools/lookup", data=sop_instance_uid, timeout=10).json()
        return requests.get(f"{self.url}/instances/{found[0]['ID']}/file", timeout=10).content
