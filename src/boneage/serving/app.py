"""The HTTP API and the web page: FastAPI, because it validates uploads and form fields, writes
the OpenAPI spec itself and serves with uvicorn, all of it well kept and typed.

Every bad request gets a 4xx JSON body {"error": what is wrong, "send": what to send instead};
an unexpected failure gets a 500 with the error's name only (the trace goes to the log), and
the server goes on serving. An upload's pixel count is read from its header and a bomb refused
(413) before a pixel is decoded; at most `decode_slots` uploads are decoded at once, which bounds
the server's memory whatever the number of concurrent requests. With an `api_key`, the API
answers only requests that send it as a bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from boneage.datamodules.images import IMAGE_SUFFIXES, ImageLimits, UnreadableImage, read_grayscale
from boneage.datamodules.sex import read_sex
from boneage.selfcheck.header import header_refusal
from boneage.serving.batcher import MicroBatcher
from boneage.serving.model import ServedModel

log = logging.getLogger(__name__)

IMAGE_HINT = "a radiograph as a PNG, JPEG, 8/16-bit TIFF or DICOM file in the multipart field 'file'"


class ApiError(Exception):
    """A bad request: its status, what is wrong and what to send instead."""

    def __init__(self, status: int, error: str, send: str) -> None:
        super().__init__(error)
        self.status, self.error, self.send = status, error, send


def create_app(model: ServedModel, max_upload_mb: float = 50, max_batch: int = 16, max_wait_ms: float = 10,
               max_batch_files: int = 64, limits: ImageLimits | None = None, decode_slots: int = 2,
               api_key: str | None = None, modalities: list[str] | None = None) -> FastAPI:  # fmt: skip
    """The app serving `model`; requests are batched by a MicroBatcher for its lifetime."""
    limit = int(max_upload_mb * 2**20)
    limits = limits or ImageLimits()
    batcher = MicroBatcher(lambda items: model.predict(pd.DataFrame(items)), max_batch, max_wait_ms / 1000)
    decoding = asyncio.Semaphore(decode_slots)
    authorized = [Depends(bearer_check(api_key))] if api_key else []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run_forever())
        yield
        task.cancel()

    app = FastAPI(title="boneage", description="Bone age (or any boneage run's target) from a radiograph.",
                  lifespan=lifespan)  # fmt: skip

    @app.exception_handler(ApiError)
    async def bad_request(request: Request, error: ApiError) -> JSONResponse:
        challenge = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse({"error": error.error, "send": error.send}, status_code=error.status, headers=challenge)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        body = {
            "error": f"the request does not match the API ({problems})",
            "send": f"multipart/form-data with {IMAGE_HINT}",
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def failure(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        body = {"error": f"internal error ({type(error).__name__}); the server goes on, the trace is in its log",
                "send": "the same request again, or report it with the server's log"}  # fmt: skip
        return JSONResponse(body, status_code=500)

    @app.middleware("http")
    async def refuse_huge_requests(request: Request, call_next: Any) -> Any:
        declared = int(request.headers.get("content-length") or 0)
        if declared > limit * max_batch_files:
            body = {
                "error": f"the request has {declared / 2**20:.0f} MB",
                "send": f"at most {max_upload_mb:g} MB per image",
            }
            return JSONResponse(body, status_code=413)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return files("boneage.serving").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model", dependencies=authorized)
    async def describe() -> dict[str, Any]:
        return model.description()

    @app.post("/predict", dependencies=authorized)
    async def predict(
        request: Request, file: Annotated[UploadFile | None, File()] = None, sex: Annotated[str | None, Form()] = None
    ) -> dict[str, Any]:
        """One image (and the table inputs the model needs, e.g. sex) -> its predicted age."""
        if file is None:
            raise ApiError(422, "no image in the request", IMAGE_HINT)
        inputs = table_inputs(model.inputs, {"sex": sex, **await _other_fields(request)})
        return await _predict_one(file, inputs)

    @app.post("/predict/batch", dependencies=authorized)
    async def predict_batch(
        request: Request, files: Annotated[list[UploadFile] | None, File()] = None,
        sex: Annotated[list[str] | None, Form()] = None,  # named for the API docs; read with the other inputs
    ) -> dict[str, Any]:  # fmt: skip
        """Several images (multipart field 'files', repeated); each table input the model needs
        (sex, ...) once for all or once per image. Each image gets its prediction or its own
        error: one bad file does not lose the others."""
        if not files:
            raise ApiError(422, "no images in the request", "one or more files in the multipart field 'files'")
        if len(files) > max_batch_files:
            raise ApiError(413, f"{len(files)} images in one request", f"at most {max_batch_files} per request")
        given = await _batch_fields(request, model.inputs, len(files))
        results = []
        for index, upload in enumerate(files):
            try:
                inputs = table_inputs(model.inputs, {name: values[index] for name, values in given.items()})
                results.append(await _predict_one(upload, inputs))
            except ApiError as error:
                results.append({"image": upload.filename, "error": error.error, "send": error.send})
        return {"predictions": results, "unit": model.unit, "model": model.identity()}

    async def _predict_one(upload: UploadFile, inputs: dict[str, Any]) -> dict[str, Any]:
        data = await upload.read(limit + 1)
        name = upload.filename or "the upload"
        if len(data) > limit:
            raise ApiError(
                413, f"{name} is larger than {max_upload_mb:g} MB", "a smaller image (the limit is max_upload_mb)"
            )
        if not data:
            raise ApiError(400, f"{name} is empty", IMAGE_HINT)
        suffix = Path(name).suffix.lower()
        with tempfile.TemporaryDirectory(prefix="boneage-upload-") as folder:
            path = Path(folder) / f"upload{suffix if suffix in IMAGE_SUFFIXES else ''}"
            path.write_bytes(data)
            refusal = None if modalities is None else await asyncio.to_thread(header_refusal, path, modalities)
            if refusal:  # the header rules out a hand radiograph: its pixels are never decoded
                answer = {"assessed": False, "reason": refusal, "withheld": True}
            else:
                await _check_image(path, name)
                answer = await batcher.submit({"image": str(path), **inputs})
        return {"image": name, **answer, "unit": model.unit, "model": model.identity()}

    async def _check_image(path: Path, name: str) -> None:
        """Decodes the upload with the one reader (in a thread, `decode_slots` at once): a bomb is
        refused from its header (413), anything else unreadable with the reason (415)."""
        async with decoding:
            try:
                await asyncio.to_thread(read_grayscale, path, limits)
            except UnreadableImage as refusal:
                if refusal.too_large:
                    send = "a smaller image (the limit is max_pixels)"
                    raise ApiError(413, f"{name} is {refusal.reason}", send) from None
                raise ApiError(415, f"{name} cannot be read as an image: {refusal.reason}", IMAGE_HINT) from None

    return app


def bearer_check(api_key: str):
    """A dependency that lets a request through only with `Authorization: Bearer <api_key>`,
    compared in constant time (no timing tells how much of a guess was right)."""
    scheme = HTTPBearer(auto_error=False, description="the server's api_key")

    # A default, not Annotated: under postponed annotations FastAPI cannot resolve a local scheme.
    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:  # noqa: B008
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, api_key.encode()):
            raise ApiError(401, "missing or wrong API key", "the header Authorization: Bearer <the server's api_key>")

    return check


def table_inputs(needed: list[str], given: dict[str, Any]) -> dict[str, Any]:
    """The model's table inputs from the form: sex as F/M, the others as numbers."""
    values: dict[str, Any] = {}
    for name in needed:
        raw = given.get(name)
        if raw is None or str(raw).strip() == "":
            send = "sex=F or sex=M" if name == "sex" else f"{name}=<number>"
            raise ApiError(422, f"this model needs '{name}' beside the image", f"the form field {send}")
        if name == "sex":
            values[name] = read_sex(pd.Series([raw]))[0]
            if values[name] is None:
                raise ApiError(422, f"unknown sex code {raw!r}", "sex=F or sex=M (female/male, girl/boy also work)")
            continue
        try:
            values[name] = float(raw)
        except ValueError:
            raise ApiError(422, f"{name}={raw!r} is not a number", f"the form field {name}=<number>") from None
    return values


async def _batch_fields(request: Request, needed: list[str], images: int) -> dict[str, list[Any]]:
    """Each needed table input's value per image of a batch: given once for all, or once per image."""
    form = await request.form()
    given = {}
    for name in needed:
        values = form.getlist(name) or [None]
        if len(values) not in (1, images):
            raise ApiError(
                422, f"{len(values)} {name} values for {images} images", f"one {name} for all, or one per image"
            )
        given[name] = values * images if len(values) == 1 else values
    return given


async def _other_fields(request: Request) -> dict[str, Any]:
    """Form fields beyond file and sex (a model's other table inputs)."""
    form = await request.form()
    return {key: value for key, value in form.items() if key not in ("file", "sex") and isinstance(value, str)}
