"""The inference server's routes: OIP V2 REST, /predict, /invocations, /feedback, health, metrics.

Each inference route is a decoder and an encoder around :meth:`Runtime.serve`
(:mod:`loopml.server.inference_runtime`), answered by :class:`FastLane` before the app's
middleware; metadata, health, feedback and metrics are ordinary routes.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from loopml import __version__
from loopml.errors import LoopmlError, TooLarge
from loopml.server import errors
from loopml.server.inference_auth import InferenceAuth
from loopml.server.inference_runtime import (
    Decode,
    Encode,
    Runtime,
    binary_response,
    error_response,
    json_response,
    log,
    media_type,
    oip_error_body,
    parse_json,
    request_id_of,
)
from loopml.server.limits import content_length, read_body
from loopml.serving.admission import DeadlineExceeded, MemoryBudget, Overloaded, body_cost
from loopml.serving.modelset import ServedModel
from loopml.serving.oip_binary import binary_outputs
from loopml.serving.payloads import decode_invocations, decode_predict, predictions
from loopml.serving.protocol import Decoded, decode_infer, encode_outputs


def _decode_oip(payload: Any, served: ServedModel) -> Decoded:
    return decode_infer(payload, served.predictor.signature)


def _encode_oip(
    output: Any, served: ServedModel, decoded: Decoded, rid: str
) -> dict[str, Any] | Response:
    sig = served.predictor.signature
    outputs = encode_outputs(output, sig.outputs if sig is not None else (), decoded.outputs)
    doc = {"model_name": served.name, "model_version": served.version,
           "id": decoded.request_id or rid, "outputs": outputs}  # fmt: skip
    if decoded.binary is None:  # every output as JSON
        return doc
    blobs = binary_outputs(outputs, decoded.binary)
    return binary_response(doc, blobs) if blobs else doc


def _decode_predict(payload: Any, served: ServedModel) -> Decoded:
    return decode_predict(payload)


def _encode_predict(output: Any, served: ServedModel, decoded: Decoded, rid: str) -> dict[str, Any]:
    return {"predictions": predictions(output), "model": served.name, "version": served.version}


def _decode_mlflow(payload: Any, served: ServedModel) -> Decoded:
    return payload if isinstance(payload, Decoded) else decode_invocations(payload)


def _encode_mlflow(output: Any, served: ServedModel, decoded: Decoded, rid: str) -> dict[str, Any]:
    return {"predictions": predictions(output)}


def inference_router(
    rt: Runtime, memory: MemoryBudget | None = None, max_bytes: int = 8 * 2**20
) -> APIRouter:
    """Every route of the inference server, over ``rt``; ``/feedback`` bodies take their share
    of ``memory`` while they are read and parsed, as the inference routes do."""
    router = APIRouter()
    memory = memory or MemoryBudget(body_cost(None, max_bytes), rt.admission.max_queue)

    @router.get("/v2/health/live")
    async def live() -> Response:
        return json_response(200, {"live": True})

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        ok = rt.ready()
        return json_response(200 if ok else 503, {"ready": ok})

    @router.get("/v2")
    async def server_metadata() -> Response:
        return json_response(200, {"name": "loopml", "version": __version__,
                                   "extensions": ["binary_tensor_data"]})  # fmt: skip

    @router.post("/v2/repository/index")
    async def repository_index() -> Response:
        # The body may hold {"ready": true}: every model listed here is served, so it is moot.
        ok = rt.ready()
        state, reason = ("READY", "") if ok else ("UNAVAILABLE", "the server is not ready")
        return json_response(200, [{"name": s.name, "version": s.version, "state": state,
                                    "reason": reason} for s in rt.models.served()])  # fmt: skip

    @router.get("/v2/models/{name}")
    async def metadata(name: str) -> Response:
        return _metadata(rt, name, None)

    @router.get("/v2/models/{name}/versions/{version}")
    async def version_metadata(name: str, version: str) -> Response:
        return _metadata(rt, name, version)

    @router.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        return _model_ready(rt, name, None)

    @router.get("/v2/models/{name}/versions/{version}/ready")
    async def version_ready(name: str, version: str) -> Response:
        return _model_ready(rt, name, version)

    @router.post("/feedback")
    async def feedback(request: Request) -> Response:
        cost = body_cost(content_length(request.scope), max_bytes)
        deadline = asyncio.get_running_loop().time() + rt.timeout_s
        try:
            media_type(request.headers)
            async with memory.hold(cost, deadline):
                event = rt.feedback(parse_json(await request.body()))
        except LoopmlError as e:
            return error_response(e)
        except ClientDisconnect:  # gone, or cut off by the body limit (already answered)
            return Response(status_code=499)
        response = json_response(202, {"accepted": True, "request_id": event.request_id})
        response.background = BackgroundTask(rt.emit_feedback, event)
        return response

    @router.get("/ping")
    async def ping() -> Response:  # what MLflow's scoring server answers health checks on
        return json_response(200 if rt.ready() else 503, {"status": "ok"})

    @router.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = rt.metrics.render()
        return Response(body, media_type=content_type)

    return router


def _metadata(rt: Runtime, name: str, version: str | None) -> Response:
    try:
        return json_response(200, rt.models.get(name, version).metadata)
    except LoopmlError as e:
        return error_response(e, oip=True)


def _model_ready(rt: Runtime, name: str, version: str | None) -> Response:
    try:
        served = rt.models.get(name, version)
    except LoopmlError as e:
        return error_response(e, oip=True)
    ok = rt.ready()
    return json_response(200 if ok else 503, {"name": served.name, "ready": ok})


SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
"""On every answer of the inference server: no content sniffing, nothing to render or frame
(its answers are data, never pages)."""


class OipErrorShape:
    """ASGI middleware: every error answer under ``/v2`` in the protocol's shape
    ``{"error": "<message>"}``, whoever wrote it in the platform's (the router's 404 and 405,
    the body limit's 413, a guard's 401 or 403). The infer routes write it themselves, in the
    :class:`FastLane`; the other ``/v2`` routes are small, so rewriting costs nothing that
    matters."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != "/v2" and not path.startswith("/v2/"):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def reshape(message: Any) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = _oip_error(b"".join(chunks))
            sent = start.get("headers", ())
            headers = [(k, v) for k, v in sent if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshape)


def _oip_error(body: bytes) -> bytes:
    """A platform error document as the protocol's; any other body as it is."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    inner = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("message"), str):
        return orjson.dumps(oip_error_body(inner["message"]))
    return body


_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


@dataclass(frozen=True, slots=True)
class LaneRoute:
    """An inference route :class:`FastLane` matched: its template, format and target model
    (``oip``: an Open Inference Protocol route, with its error shape and binary tensors)."""

    template: str
    decode: Decode
    encode: Encode
    csv: bool = False
    name: str | None = None
    version: str | None = None
    oip: bool = False


_SMALL_BODY = 64 * 2**10  # bodies up to this size are read without a deadline of their own

_PREDICT = LaneRoute("/predict", _decode_predict, _encode_predict)
_INVOCATIONS = LaneRoute("/invocations", _decode_mlflow, _encode_mlflow, csv=True)


class FastLane:
    """The inference routes (``POST`` OIP infer, ``/predict``, ``/invocations``), answered from
    ASGI in one function: the request id, the body limit and the metrics the other routes get
    from middleware are done in line, and there is no router or endpoint machinery in between
    (together most of a one-row request's time on the event loop). Every other request goes
    through the app's middleware and routes."""

    def __init__(
        self, rt: Runtime, max_bytes: int, auth: InferenceAuth | None = None,
        memory: MemoryBudget | None = None,
    ) -> None:  # fmt: skip
        self.rt = rt
        self.max_bytes = max_bytes
        self.auth = auth
        self.memory = memory or MemoryBudget(body_cost(None, max_bytes), rt.admission.max_queue)

    def match(self, scope: Scope) -> LaneRoute | None:
        """The inference route of ``scope``'s path (any method: others get a 405 here)."""
        if scope["type"] != "http":
            return None
        path: str = scope["path"]
        if path == "/predict":
            return _PREDICT
        if path == "/invocations":
            return _INVOCATIONS
        m = _INFER.match(path)
        if m is None:
            return None
        name, version = m[1], m[2]
        template = "/v2/models/{name}/versions/{version}/infer" if version else (
            "/v2/models/{name}/infer"
        )  # fmt: skip
        return LaneRoute(template, _decode_oip, _encode_oip, False, name, version, oip=True)

    async def answer(self, route: LaneRoute, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        rid = request_id_of(scope)
        method: str = scope["method"]
        held = 0  # of the memory budget: from before the body is read until all is done
        try:
            try:
                response: Response
                denied = None if self.auth is None else await self.auth.refusal(scope)
                if denied is not None:
                    response = error_response(denied, oip=route.oip)
                elif method != "POST":
                    refused = f"{method} is not allowed here: use POST"
                    response = (
                        json_response(405, oip_error_body(refused)) if route.oip
                        else errors.error_response(405, "method_not_allowed", refused)
                    )  # fmt: skip
                    response.headers["allow"] = "POST"
                else:
                    held, body = await self._read(scope, receive)
                    response = await self.rt.serve(
                        scope["path"], Headers(scope=scope), body, route.decode, route.encode,
                        rid=rid, name=route.name, version=route.version, csv=route.csv,
                        oip=route.oip,
                    )  # fmt: skip
            except ClientDisconnect:  # nobody to answer
                return
            except (TooLarge, Overloaded, DeadlineExceeded) as e:  # the body is unread: close
                self.rt.count_refusal(e)
                response = error_response(e, oip=route.oip)
                response.headers["connection"] = "close"
            except Exception:
                log.exception("inference request %s failed", rid)
                crash = LoopmlError("internal error; see the server log")
                response = error_response(crash, oip=route.oip)
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [*response.raw_headers, (b"x-request-id", rid.encode()),
                                *SECURITY_HEADERS],
                }
            )  # fmt: skip
            await send({"type": "http.response.body", "body": response.body})
            self.rt.metrics.observe(method, route.template, response.status_code,
                                    time.perf_counter() - start)  # fmt: skip
            if response.background is not None:  # the prediction log, shadows: after the answer
                await response.background()
        finally:
            if held:
                self.memory.release(held)

    async def _read(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        """Reserve the body's share of the memory budget (:class:`MemoryBudget`), then read
        the body, both within the request's time; the reservation is the caller's to release."""
        declared = content_length(scope)
        size = self.max_bytes if declared is None else min(declared, self.max_bytes)
        cost = body_cost(declared, self.max_bytes)
        deadline = asyncio.get_running_loop().time() + self.rt.timeout_s
        await self.memory.acquire(cost, deadline)
        try:
            if size <= _SMALL_BODY:  # holds next to nothing: no timer (a few µs) for it
                return cost, await read_body(scope, receive, self.max_bytes)
            async with asyncio.timeout_at(deadline):
                return cost, await read_body(scope, receive, self.max_bytes)
        except TimeoutError:
            self.memory.release(cost)
            raise DeadlineExceeded(
                f"the request body did not arrive within {self.rt.timeout_s:g} s"
            ) from None
        except BaseException:
            self.memory.release(cost)
            raise
