"""`python -m boneage.pacs run=<run | ensemble | export> send_to=<AET>@<host>:<port>`: a DICOM
node in the hospital's workflow (node.py), started from its config (conf/pacs.yaml)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from boneage.runtime.startup import collector_paused

with collector_paused():  # torch and its libraries: a fifth quicker to start
    from omegaconf import DictConfig

    from boneage.config.cli import hydra_command
    from boneage.config.errors import ConfigError
    from boneage.datamodules.images import ImageLimits
    from boneage.evaluation.answers import answers_for
    from boneage.pacs.assessment import Assessor
    from boneage.pacs.destinations import destination_of
    from boneage.pacs.identity import NodeIdentity
    from boneage.pacs.node import Node, Retry
    from boneage.pacs.queue import WorkQueue
    from boneage.runtime.network import is_loopback


def build_node(cfg: DictConfig) -> Node:
    """The node of `cfg`: its model, queue and destination (checked before anything listens)."""
    check_exposure(cfg)
    destination = destination_of(cfg.send_to, cfg.ae_title, cfg.send_timeout_s)
    answers = answers_for(cfg, intervals=cfg.interval is not None)
    limits = ImageLimits(cfg.max_pixels, cfg.multi_frame)
    assessor = Assessor(answers, cfg.interval, limits, list(cfg.accepted_modalities))
    retry = Retry(cfg.retry_initial_s, cfg.retry_max_s, cfg.max_refusals)
    queue = WorkQueue(Path(cfg.queue).expanduser())
    return Node(assessor, NodeIdentity.of(answers.members), queue, destination, cfg.secondary_capture, retry)


def check_exposure(cfg: DictConfig) -> None:
    """Off loopback, only the callers named in allowed_callers may send images."""
    if not is_loopback(cfg.host) and not cfg.allowed_callers:
        raise ConfigError(
            f"host={cfg.host} listens to other machines, and allowed_callers is empty: any modality on the "
            "network could send images. Name the calling AE titles, e.g. allowed_callers=[ORTHANC,CR_ROOM_1], "
            "or host=127.0.0.1."
        )


@hydra_command("pacs")
def main(cfg: DictConfig) -> None:
    logging.getLogger("boneage.pacs").setLevel(cfg.log_level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its every PDU at INFO would drown the node's own lines
    node = build_node(cfg)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node.start(cfg.host, cfg.port, cfg.ae_title, list(cfg.allowed_callers))
    print(f"boneage DICOM node {cfg.ae_title} listens on {cfg.host}:{cfg.port}, answers to {cfg.send_to}, "
          f"queue {Path(cfg.queue).resolve()}; Ctrl-C stops it", flush=True)  # fmt: skip
    stop.wait()
    print("stopping: the image being assessed finishes; what is queued waits for the next start", flush=True)
    node.stop()


if __name__ == "__main__":
    main()
