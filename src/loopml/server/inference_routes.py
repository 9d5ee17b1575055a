"""The inference server's routes: OIP V2 REST, /predict, /invocations, /feedback, health, metrics.

Each inference route is a decoder and an encoder around :meth:`Runtime.serve`
(:mod:`loopml.server.inference_runtime`); metadata and health answer from the model set.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from loopml import __version__
from loopml.errors import LoopmlError
from loopml.server.inference_runtime import (
    Decode,
    Encode,
    Runtime,
    error_response,
    json_response,
    media_type,
    parse_json,
)
from loopml.server.metrics import RouteLabel
from loopml.serving.modelset import ServedModel
from loopml.serving.payloads import decode_invocations, decode_predict, predictions
from loopml.serving.protocol import Decoded, decode_infer, encode_outputs


def _decode_oip(payload: Any, served: ServedModel) -> Decoded:
    return decode_infer(payload, served.predictor.signature)


def _encode_oip(output: Any, served: ServedModel, decoded: Decoded, rid: str) -> dict[str, Any]:
    sig = served.predictor.signature
    outputs = encode_outputs(output, sig.outputs if sig is not None else (), decoded.outputs)
    return {"model_name": served.name, "model_version": served.version,
            "id": decoded.request_id or rid, "outputs": outputs}  # fmt: skip


def _decode_predict(payload: Any, served: ServedModel) -> Decoded:
    return decode_predict(payload)


def _encode_predict(output: Any, served: ServedModel, decoded: Decoded, rid: str) -> dict[str, Any]:
    return {"predictions": predictions(output), "model": served.name, "version": served.version}


def _decode_mlflow(payload: Any, served: ServedModel) -> Decoded:
    return payload if isinstance(payload, Decoded) else decode_invocations(payload)


def _encode_mlflow(output: Any, served: ServedModel, decoded: Decoded, rid: str) -> dict[str, Any]:
    return {"predictions": predictions(output)}


def inference_router(rt: Runtime) -> APIRouter:
    """Every route of the inference server, over ``rt``."""
    router = APIRouter()
    oip: tuple[Decode, Encode] = (_decode_oip, _encode_oip)

    @router.get("/v2/health/live")
    async def live() -> Response:
        return json_response(200, {"live": True})

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        ok = rt.ready()
        return json_response(200 if ok else 503, {"ready": ok})

    @router.get("/v2")
    async def server_metadata() -> Response:
        return json_response(200, {"name": "loopml", "version": __version__, "extensions": []})

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

    @router.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        return await rt.serve(request, *oip, name=name)

    @router.post("/v2/models/{name}/versions/{version}/infer")
    async def version_infer(name: str, version: str, request: Request) -> Response:
        return await rt.serve(request, *oip, name=name, version=version)

    @router.post("/predict")
    async def predict(request: Request) -> Response:
        return await rt.serve(request, _decode_predict, _encode_predict)

    @router.post("/invocations")
    async def invocations(request: Request) -> Response:
        return await rt.serve(request, _decode_mlflow, _encode_mlflow, csv=True)

    @router.post("/feedback")
    async def feedback(request: Request) -> Response:
        try:
            media_type(request)
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
        return error_response(e)


def _model_ready(rt: Runtime, name: str, version: str | None) -> Response:
    try:
        served = rt.models.get(name, version)
    except LoopmlError as e:
        return error_response(e)
    ok = rt.ready()
    return json_response(200 if ok else 503, {"name": served.name, "ready": ok})


_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class FastLane:
    """ASGI: the inference routes straight to :meth:`Runtime.serve`, past FastAPI's routing and
    endpoint machinery (a quarter of a one-row request's time on the event loop). The same
    handlers as the router's, so answers are identical; everything else goes to the app."""

    def __init__(self, app: Any, rt: Runtime) -> None:
        self.app = app
        self.rt = rt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            name = version = None
            if path == "/predict":
                template, decode, encode, csv = path, _decode_predict, _encode_predict, False
            elif path == "/invocations":
                template, decode, encode, csv = path, _decode_mlflow, _encode_mlflow, True
            elif (m := _INFER.match(path)) is not None:
                name, version = m[1], m[2]
                template = "/v2/models/{name}" + ("/versions/{version}" if version else "") + (
                    "/infer"
                )  # fmt: skip
                decode, encode, csv = _decode_oip, _encode_oip, False
            else:
                await self.app(scope, receive, send)
                return
            scope["route"] = RouteLabel(template)
            response = await self.rt.serve(Request(scope, receive), decode, encode, name=name,
                                           version=version, csv=csv)  # fmt: skip
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
