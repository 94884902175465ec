"""`python -m boneage.serve run=<run>`: a REST API and a web page for a trained run or ensemble.

Offline and local by default (127.0.0.1): POST /predict, POST /predict/batch, GET /health,
GET /model, the OpenAPI spec at /openapi.json, and the page at / (drop an image, read its age,
or each head's value or class).
"""

from __future__ import annotations

from boneage.runtime.startup import collector_paused

with collector_paused():  # torch and its libraries: a fifth quicker to start
    import uvicorn
    from omegaconf import DictConfig

    from boneage.config.cli import hydra_command
    from boneage.config.errors import ConfigError
    from boneage.datamodules.images import ImageLimits
    from boneage.evaluation.answers import answers_for
    from boneage.runtime.network import is_loopback
    from boneage.serving.app import create_app
    from boneage.serving.model import ServedModel


def build_app(cfg: DictConfig):
    """The app for the run or ensemble of `cfg`, with its limits and batching."""
    answers = answers_for(cfg, intervals=bool(cfg.interval), reject=cfg.reject)
    model = ServedModel(answers, cfg.interval)
    limits = ImageLimits(cfg.max_pixels, cfg.multi_frame)
    return create_app(model, cfg.max_upload_mb, cfg.max_batch, cfg.max_wait_ms, cfg.max_batch_files, limits,
                      cfg.decode_slots, cfg.api_key, list(cfg.accepted_modalities))  # fmt: skip


def check_exposure(cfg: DictConfig) -> None:
    """A server reachable from other machines answers only with an api_key, unless the user says
    otherwise in so many words (allow_unauthenticated=true)."""
    if is_loopback(cfg.host) or cfg.api_key or cfg.allow_unauthenticated:
        return
    raise ConfigError(
        f"host={cfg.host} serves other machines, and no api_key is set: anyone who reaches the port could use the "
        "model. Set api_key=<a long random secret> (clients send it as Authorization: Bearer <key>), or "
        "allow_unauthenticated=true behind your own authentication, or host=127.0.0.1."
    )


@hydra_command("serve")
def main(cfg: DictConfig) -> None:
    check_exposure(cfg)
    app = build_app(cfg)
    print(f"boneage serves on http://{cfg.host}:{cfg.port}/ (the page), /docs (the API); Ctrl-C stops it", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)


if __name__ == "__main__":
    main()
