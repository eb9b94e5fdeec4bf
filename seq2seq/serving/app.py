"""The translation server: an HTTP API over one or more checkpoints, and the attention page.

`create_app(models, limits, batching)` builds a FastAPI app (FastAPI rather than bare Starlette:
its request models check every field's type and name the field in the error, and its test
client drives the whole ASGI stack in tests; uvicorn serves it):

- `GET /` the page (`web/index.html`): type a sentence, see the translation and where each target
  subword attends.
- `GET /health`, `GET /models` (id, languages, scorer, parameters, the run's val/test BLEU).
- `POST /translate` `{"text": [...], "model": ID, "beam": 5, "nbest": 1, "attention": false,
  "alignments": false}`: per line, its hypotheses (text, score) and, with attention, the
  subwords and the weights; with alignments, hard word links `[[i, j], ...]` (source word i,
  target word j) per hypothesis and, for the best, per line.
- `POST /attention` `{"text": [...], "target": [...], "model": ID}`: per line, the model's
  attention while it reads the given translation (forced decoding), its word links and
  statistics: what the page's compare view draws for each model (`forced_attention.py`).
- `GET /docs` the API's Swagger UI, and `GET /openapi.json` its schema. FastAPI's page loads
  Swagger UI from a CDN, blank offline; fastapi-offline's serves the same files from the
  package (under /static-offline-docs).

Concurrent requests are decoded together (`request_batcher.py`); past its bounded queue the
answer is 503 with Retry-After. Every bad request gets a 4xx JSON answer
`{"error": ..., "field": ...}` naming the field; N lines in give N results out, in order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seq2seq.analysis.run_dir import METRICS, metric_value, read_results
from seq2seq.inference.translator import Translation, Translator
from seq2seq.serving.forced_attention import AttentionRequest, forced_json
from seq2seq.serving.request_batcher import Batcher, Unavailable
from seq2seq.serving.settings import Batching, Limits

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """A translator under its id, with what `GET /models` says of it."""

    id: str
    translator: Translator
    val_bleu: float | None = None
    test_bleu: float | None = None

    @classmethod
    def load(cls, model_id: str, translator: Translator) -> ServedModel:
        """The scores come from results.json of the run the checkpoint belongs to, if any."""
        return cls(model_id, translator, *run_scores(translator.checkpoints))

    def describe(self) -> dict[str, Any]:
        config = self.translator.config
        model = self.translator.model
        return {
            "id": self.id,
            "src_lang": config.data.src_lang,
            "tgt_lang": config.data.tgt_lang,
            "scorer": config.attention.type,
            "heads": model.decoder.attention.num_heads,
            "parameters": self.translator.parameters,
            "val_bleu": self.val_bleu,
            "test_bleu": self.test_bleu,
            "quantized": self.translator.quantization is not None,
            "device": str(self.translator.device),
        }


def run_scores(checkpoints: Sequence[Path]) -> tuple[float | None, float | None]:
    """Val and test BLEU from results.json of the run dir holding a model's one checkpoint
    (RUN/checkpoints/best.pt or averaged.pt), read as the report reads it; None where there is
    none (no checkpoint, not in a run dir, or an ensemble's several)."""
    if len(checkpoints) != 1 or checkpoints[0].parent.name != "checkpoints":
        return None, None
    (checkpoint,) = checkpoints
    results, _ = read_results(checkpoint.parent.parent / "results.json")
    if results is None:
        return None, None
    return (metric_value(results, METRICS["val_bleu"][1]),
            metric_value(results, METRICS["test_bleu"][1]))


def model_ids(checkpoints: Sequence[Path]) -> list[str]:
    """A readable, unique id per checkpoint: its run dir's name (or the file's stem), with -2,
    -3, ... for repeats."""
    ids: list[str] = []
    for path in checkpoints:
        base = path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
        model_id, n = base, 1
        while model_id in ids:
            n += 1
            model_id = f"{base}-{n}"
        ids.append(model_id)
    return ids


class ApiError(Exception):
    """A request the server refuses: HTTP `status`, a message and the field it is about."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class TranslateRequest(BaseModel):
    """The body of POST /translate. Strict: "5" is not a beam size, unknown keys are refused."""

    model_config = ConfigDict(strict=True, extra="forbid")

    text: list[str]
    model: str | None = None
    beam: int = 5
    nbest: int = 1
    attention: bool = False
    alignments: bool = False


REQUEST_BODIES: dict[str, type[BaseModel]] = {"/translate": TranslateRequest,
                                              "/attention": AttentionRequest}


def create_app(models: Sequence[ServedModel], limits: Limits | None = None,
               batching: Batching | None = None) -> FastAPI:
    """The app serving `models` (the first is the default)."""
    limits, batching = limits or Limits(), batching or Batching()
    if not models:
        raise ValueError("serve at least one model")
    by_id = {model.id: model for model in models}
    page = resources.files("seq2seq.serving").joinpath("web/index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = Batcher(batching)
        app.state.batcher.start()
        yield
        await app.state.batcher.close()  # in-flight requests are finished by now (uvicorn)

    app = FastAPIOffline(title="seq2seq", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message, "field": error.field},
                            status_code=error.status)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> JSONResponse:
        headers = None if error.retry_after is None else {"Retry-After": str(error.retry_after)}
        return JSONResponse({"error": str(error), "field": None}, status_code=503,
                            headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (an unknown path, a wrong method, a body that is not UTF-8)
        # in the same shape as ours
        return JSONResponse({"error": str(error.detail), "field": None},
                            status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:  # e.g. a failed search
        return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}",
                             "field": None}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send the body as JSON, with Content-Type: "
                                          "application/json", "field": None}, status_code=415)
        body = REQUEST_BODIES.get(request.url.path, TranslateRequest)
        status, message, where = describe_validation_error(error.errors()[0], body)
        return JSONResponse({"error": message, "field": where}, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", "models": len(models),
                "queued_lines": request.app.state.batcher.queued_lines}

    @app.get("/models")
    async def list_models() -> dict[str, Any]:
        return {"default": models[0].id, "limits": asdict(limits),
                "models": [model.describe() for model in models]}

    @app.post("/translate")
    async def translate(body: TranslateRequest, request: Request) -> JSONResponse:
        model = check_request(body, by_id, models[0], limits)
        settings = model.translator.settings(beam_size=body.beam, nbest=body.nbest,
                                             attention=body.attention or body.alignments)
        found = await request.app.state.batcher.translate(model.translator, body.text, settings)
        # A JSONResponse, not a dict: FastAPI would walk every attention weight through
        # jsonable_encoder first, which costs more than the json.dumps of the answer.
        return JSONResponse({"model": model.id,
                             "translations": [translation_json(t, body.attention,
                                                               body.alignments)
                                              for t in found]})

    @app.post("/attention")
    async def attention(body: AttentionRequest) -> JSONResponse:
        model = check_attention_request(body, by_id, models[0], limits)
        # one forward pass, off the event loop (the search's worker thread is the batcher's)
        pairs = await run_in_threadpool(forced_json, model.translator, body.text, body.target)
        return JSONResponse({"model": model.id, "pairs": pairs})

    return app


def check_request(body: TranslateRequest, by_id: dict[str, ServedModel], default: ServedModel,
                  limits: Limits) -> ServedModel:
    """The model the request asks for; ApiError for what the limits or the model refuse."""
    model = requested_model(body.model, by_id, default)
    check_lines(body.text, "text", limits)
    if not 1 <= body.beam <= limits.max_beam:
        raise ApiError(422, f"beam must be in [1, {limits.max_beam}], got {body.beam}", "beam")
    if not 1 <= body.nbest <= body.beam:
        raise ApiError(422, f"nbest must be in [1, beam={body.beam}], got {body.nbest}",
                       "nbest")
    return model


def check_attention_request(body: AttentionRequest, by_id: dict[str, ServedModel],
                            default: ServedModel, limits: Limits) -> ServedModel:
    """POST /attention's check_request: the lines of both fields, one target per source."""
    model = requested_model(body.model, by_id, default)
    check_lines(body.text, "text", limits)
    check_lines(body.target, "target", limits)
    if len(body.target) != len(body.text):
        raise ApiError(422, f"target has {len(body.target)} lines but text has "
                            f"{len(body.text)}: send one translation per source line", "target")
    return model


def requested_model(model_id: str | None, by_id: dict[str, ServedModel],
                    default: ServedModel) -> ServedModel:
    if model_id is not None and model_id not in by_id:
        raise ApiError(404, f"model {model_id!r} is not served; served: {', '.join(by_id)}",
                       "model")
    return by_id[model_id] if model_id is not None else default


def check_lines(lines: list[str], field: str, limits: Limits) -> None:
    """ApiError naming `field` (or the line, `field[i]`) for too many lines, a line too long,
    a line break inside a line or text that is not Unicode."""
    if len(lines) > limits.max_lines:
        raise ApiError(413, f"{field} has {len(lines)} lines, more than the "
                            f"{limits.max_lines} a request may hold", field)
    for index, line in enumerate(lines):
        where = f"{field}[{index}]"
        if len(line) > limits.max_chars:
            raise ApiError(413, f"{where} has {len(line)} characters, more than the "
                                f"{limits.max_chars} a line may have", where)
        if "\n" in line or "\r" in line:
            raise ApiError(422, f"{where} holds a line break: send one sentence per "
                                "list item", where)
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # JSON's "\ud800": a lone surrogate, no character
                raise ApiError(422, f"{where} is not valid Unicode (a lone surrogate "
                                    "escape)", where) from None


def describe_validation_error(error: dict[str, Any], body: type[BaseModel] = TranslateRequest
                              ) -> tuple[int, str, str | None]:
    """(status, message, field) of pydantic's first complaint about a `body`: 400 for a body
    that is not JSON, 422 for a field of the wrong type, a missing or an unknown one."""
    if error.get("type") == "json_invalid":
        detail = error.get("ctx", {}).get("error", "")
        return 400, f"the body is not valid JSON: {detail}".rstrip(": "), None
    loc = [part for part in error.get("loc", ()) if part != "body"]
    where = None
    if loc:
        where = str(loc[0]) + "".join(f"[{part}]" for part in loc[1:])
    message = error.get("msg", "invalid request")
    if where is None:
        message = 'the body must be a JSON object: {"text": ["a sentence", ...], ...}'
    if error.get("type") == "extra_forbidden":
        message = f"unknown field; known: {', '.join(body.model_fields)}"
    return 422, f"{where}: {message}" if where else message, where


def translation_json(found: Translation, attention: bool,
                     alignments: bool = False) -> dict[str, Any]:
    """One line's result; with `attention`, its subwords (with the final </s>) and weights as
    (heads, target subwords, source subwords) lists, rounded to 4 decimals; with `alignments`,
    hard word links as [source word, target word] pairs ([] for an empty line)."""
    hypotheses: list[dict[str, Any]] = []
    for rank, (hyp, text) in enumerate(zip(found.hypotheses, found.texts, strict=True)):
        entry: dict[str, Any] = {"text": text, "score": round(hyp.score, 4)}
        if attention:
            entry["tgt_pieces"] = found.attention_labels(rank)[1]
            entry["attention"] = found.weights(rank).double().round(decimals=4).tolist()
        if alignments:
            entry["alignment"] = [list(link) for link in found.alignment(rank)]
        hypotheses.append(entry)
    result: dict[str, Any] = {"source": found.source, "text": found.text,
                              "hypotheses": hypotheses}
    if attention:  # an empty line was not translated: no subwords
        result["src_pieces"] = found.attention_labels()[0] if found.hypotheses else []
    if alignments:
        result["alignment"] = [list(link) for link in found.alignment()]
    return result


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 before they are read into memory: at once
    when Content-Length says so, and as soon as a chunked body (no Content-Length) grows past it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # An HTTPException, which FastAPI lets through from a body it reads; any other
                # error there becomes its 400 "There was an error parsing the body".
                raise StarletteHTTPException(413, self._too_large())
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"error": self._too_large(), "field": None}, status_code=413)
        await response(scope, receive, send)
