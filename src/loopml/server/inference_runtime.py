"""The inference server's request path: read, admit, decode, validate, batch, answer, report.

Every inference route goes through :meth:`Runtime.serve`. The body is read (bounded by the body
limit middleware), then a slot is taken (503 at once when the server is full), then the body is
parsed with orjson, decoded by the route's format, validated by the model's signature and sent to
the model's batcher, all within the request's deadline (504 past it). Client mistakes are 4xx with
a JSON error, never a 500. The caller is answered first; the :class:`PredictionEvent` (and the
shadow models' predictions) are produced after the response is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.datastructures import Headers
from starlette.responses import Response

from loopml.errors import InvalidArgument, LoopmlError, Unavailable
from loopml.server import asgi_headers
from loopml.server.errors import error_body, status_of
from loopml.serving import oip_binary
from loopml.serving.admission import Admission, DeadlineExceeded, Overloaded
from loopml.serving.batching import MicroBatcher, ModelError, PredictPool
from loopml.serving.modelset import ModelSet, ServedModel
from loopml.serving.payloads import decode_csv, predictions
from loopml.serving.protocol import Decoded, FeedbackEvent, PredictionEvent, clean_request_id

log = logging.getLogger("loopml.serving")

Decode = Callable[[Any, ServedModel], Decoded]
Encode = Callable[[Any, ServedModel, Decoded, str], dict[str, Any] | Response]

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_MAX_MESSAGE = 1000
MAX_LOGGED_BODY_BYTES = 1 << 20
"""Inputs of larger requests are reported as ``{"truncated": true, "bytes": N}`` instead of as
lists the prediction log would hold in memory only to store its truncation marker
(``serving.predlog.MAX_FIELD_BYTES``, the same size)."""


class UnsupportedMediaType(InvalidArgument):
    code = "unsupported_media_type"


def status_for(err: LoopmlError) -> int:
    """The HTTP status of an error on the inference path (server/errors.py, plus 415 and 504)."""
    if isinstance(err, DeadlineExceeded):
        return 504
    if isinstance(err, UnsupportedMediaType):
        return 415
    return status_of(err)


def json_response(
    status: int, content: Any, headers: dict[str, str] | None = None, *, oip: bool = False
) -> Response:
    try:
        body = orjson.dumps(content, option=_JSON_OPTS, default=_to_json)
    except (orjson.JSONEncodeError, TypeError) as e:
        err = ModelError(f"the model's output cannot be written as JSON: {e}")
        return error_response(err, oip=oip)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def binary_response(content: dict[str, Any], blobs: list[bytes]) -> Response:
    """An OIP answer with binary outputs: its JSON, then ``blobs``; the JSON's length in the
    ``Inference-Header-Content-Length`` header (:mod:`loopml.serving.oip_binary`)."""
    try:
        head = orjson.dumps(content, option=_JSON_OPTS, default=_to_json)
    except (orjson.JSONEncodeError, TypeError) as e:
        err = ModelError(f"the model's output cannot be written as JSON: {e}")
        return error_response(err, oip=True)
    headers = {oip_binary.HEADER: str(len(head))}
    return Response(b"".join([head, *blobs]), 200, headers, "application/octet-stream")


def oip_error_body(message: str) -> dict[str, str]:
    """The Open Inference Protocol's error document: ``{"error": "<message>"}``."""
    return {"error": message[:_MAX_MESSAGE]}


def error_response(err: LoopmlError, *, oip: bool = False) -> Response:
    """``err`` as JSON: the platform's ``{"error": {"code", "message", "details"}}``, or with
    ``oip`` (every ``/v2`` route) the protocol's ``{"error": "<message>"}``; same status."""
    status = status_for(err)
    if oip:
        body: dict[str, Any] = oip_error_body(err.message)
    else:
        body = error_body(err.code, err.message[:_MAX_MESSAGE], err.details)
    headers = {"Retry-After": "1"} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return Response(orjson.dumps(body, default=str), status, headers, "application/json")


def _to_json(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays orjson cannot write as is, numpy scalars
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def plain(value: Any) -> Any:
    """``value`` as JSON-able data for events: arrays and frames become lists (one level deep,
    so a hostile, deeply nested payload costs no recursion)."""
    if hasattr(value, "columns"):  # DataFrame: a dict of columns
        return _frame_columns(value)
    if isinstance(value, dict):
        return {str(k): v.tolist() if hasattr(v, "tolist") else v for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _frame_columns(frame: Any) -> dict[str, list[Any]]:
    """A DataFrame as a dict of column lists. A frame of one numpy numeric dtype (what validated
    numeric requests become) is one array: its transpose lists every column in one call instead
    of one pandas lookup and conversion per column."""
    import numpy as np

    dtypes = list(frame.dtypes)
    first = dtypes[0] if dtypes else None
    if isinstance(first, np.dtype) and first.kind in "biuf" and all(d == first for d in dtypes):
        return dict(zip(map(str, frame.columns), frame.to_numpy().T.tolist(), strict=True))
    return {str(c): frame[c].to_numpy().tolist() for c in frame.columns}


def request_id_of(scope: Mapping[str, Any]) -> str:
    """The caller's sane ``X-Request-ID``, else a new id."""
    value = asgi_headers.header(scope, b"x-request-id")
    return clean_request_id(None if value is None else value.decode("latin-1"))


def media_type(headers: Mapping[str, str], *, csv: bool = False) -> str:
    """``json`` or ``csv`` from the Content-Type; anything else is 415, and so is none: a
    browser page may post a body without a content type and without asking first (no CORS
    preflight). Binary OIP requests are told apart before (:func:`binary_media_type`)."""
    raw = headers.get("content-type")
    if raw is None:
        allowed = "application/json or text/csv" if csv else "application/json"
        raise UnsupportedMediaType(f"the request has no Content-Type: send {allowed}")
    mt = raw.partition(";")[0].strip().lower()
    if mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json")):
        return "json"
    if csv and mt == "text/csv":
        return "csv"
    allowed = "application/json or text/csv" if csv else "application/json"
    raise UnsupportedMediaType(f"unsupported content type {mt[:80]!r}: send {allowed}")


def binary_media_type(headers: Mapping[str, str]) -> str:
    """``binary`` for an OIP body with binary tensors (``Inference-Header-Content-Length``
    set): the Content-Type may be absent (what tritonclient sends), application/octet-stream
    (the extension's examples) or JSON. A browser cannot send that header cross-site without a
    CORS preflight, so its absence of a Content-Type is not a way around the 415."""
    raw = headers.get("content-type")
    mt = "" if raw is None else raw.partition(";")[0].strip().lower()
    if mt in ("", "application/octet-stream", "application/json"):
        return "binary"
    raise UnsupportedMediaType(
        f"unsupported content type {mt[:80]!r} for binary tensor data: send "
        "application/octet-stream"
    )


def parse_body(kind: str, body: bytes, headers: Mapping[str, str]) -> Any:
    """The request body as data: CSV, JSON, or an OIP JSON header with binary tensors."""
    if kind == "csv":
        return decode_csv(body)
    if kind == "binary":
        return oip_binary.read_request(body, headers[oip_binary.HEADER])
    return parse_json(body)


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(f"malformed JSON: {e}") from None


@dataclass(eq=False)
class Runtime:
    """What the routes share: the models, the gate, the worker threads, metrics and callbacks."""

    models: ModelSet
    admission: Admission
    pool: PredictPool
    max_batch_size: int
    max_wait_ms: float
    timeout_s: float
    metrics: Any  # server.inference.InferenceMetrics
    on_prediction: Callable[[PredictionEvent], None] | None = None
    on_feedback: Callable[[FeedbackEvent], None] | None = None
    _shadow_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _at_model: int = 0  # admitted requests whose input is with a batcher

    def _more_coming(self) -> bool:
        """Are admitted requests still on their way to a batcher (parsing, validating)?"""
        return self.admission.in_flight > self._at_model

    def batcher(self, served: ServedModel) -> MicroBatcher:
        if served.batcher is None:
            # each request was checked against the signature on arrival: no second pass
            predict = getattr(served.predictor, "predict_prepared", served.predictor.predict)
            served.batcher = MicroBatcher(
                predict, self.pool, max_batch_size=self.max_batch_size,
                max_wait_ms=self.max_wait_ms, on_batch=self.metrics.batch_rows.observe,
                more_coming=self._more_coming,
            )  # fmt: skip
        return served.batcher

    def ready(self) -> bool:
        return self.models.ready() and self.pool.ready()

    async def serve(
        self, path: str, headers: Headers, body: bytes, decode: Decode, encode: Encode, *,
        rid: str, name: str | None = None, version: str | None = None, csv: bool = False,
        oip: bool = False,
    ) -> Response:  # fmt: skip
        """Answer one inference request to ``path`` whose ``body`` was read (see the module
        docstring). ``oip``: an Open Inference Protocol route (its error shape, binary
        tensors when the ``Inference-Header-Content-Length`` header is there)."""
        start = time.perf_counter()
        started_ms = int(time.time() * 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        served: ServedModel | None = None
        shadows: list[ServedModel] = []
        payload: Any = None
        decoded: Decoded | None = None
        output: Any = None
        try:
            if oip and oip_binary.HEADER in headers:
                kind = binary_media_type(headers)
            else:
                kind = media_type(headers, csv=csv)
            async with self.admission.slot(deadline):
                payload = parse_body(kind, body, headers)
                if version is None:
                    header = getattr(self.models, "routing_header", None) or "x-routing-key"
                    served, shadows = self.models.route(headers.get(header), name)
                else:
                    served = self.models.get(name or "", version)
                decoded, data = model_input(served, decode, payload)
                self._at_model += 1
                try:
                    async with asyncio.timeout_at(deadline):
                        output = await self.batcher(served).predict(data, len(data), deadline)
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"no prediction within {self.timeout_s:g} s; the request was abandoned"
                    ) from None
                finally:
                    self._at_model -= 1
            answer = encode(output, served, decoded, rid)
            response = (
                answer if isinstance(answer, Response) else json_response(200, answer, oip=oip)
            )
        except LoopmlError as e:
            self.count_refusal(e)
            response = error_response(e, oip=oip)
        if served is not None and (self.on_prediction is not None):
            latency_ms = (time.perf_counter() - start) * 1000
            args = (rid, path, served, shadows, payload, decoded, output,
                    response.status_code, latency_ms, started_ms, decode, len(body))  # fmt: skip
            response.background = BackgroundTask(self._report, *args)
        return response

    def count_refusal(self, err: LoopmlError) -> None:
        if isinstance(err, Overloaded):
            self.metrics.rejected.labels("overloaded").inc()
        elif isinstance(err, DeadlineExceeded):
            self.metrics.rejected.labels("timeout").inc()
        elif isinstance(err, Unavailable):
            self.metrics.rejected.labels("unavailable").inc()

    async def _report(
        self, rid: str, route: str, served: ServedModel, shadows: list[ServedModel],
        payload: Any, decoded: Decoded | None, output: Any, status: int, latency_ms: float,
        started_ms: int, decode: Decode, body_bytes: int,
    ) -> None:  # fmt: skip
        try:
            if body_bytes > MAX_LOGGED_BODY_BYTES:  # the log keeps only a marker: no copy
                inputs: Any = {"truncated": True, "bytes": body_bytes}
            else:
                inputs = plain(decoded.data if decoded is not None else payload)
            outputs = plain(predictions(output)) if status == 200 else None
        except Exception:  # an odd output: report the request without it
            log.exception("cannot report request %s", rid)
            inputs = outputs = None
        self._emit(PredictionEvent(rid, served.name, served.version, route, inputs, outputs,
                                   latency_ms, started_ms, status))  # fmt: skip
        if status >= 500 or payload is None:
            return
        for shadow in shadows:
            if len(self._shadow_tasks) >= self.admission.max_concurrency:
                self.metrics.shadow_dropped.inc()
                continue
            task = asyncio.get_running_loop().create_task(
                self._shadow(shadow, payload, decode, rid, route, started_ms)
            )
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    async def drain(self, timeout: float = 5.0) -> None:
        """Let the shadow predictions still running finish: a clean stop logs them too."""
        if self._shadow_tasks:
            await asyncio.wait(set(self._shadow_tasks), timeout=timeout)

    async def _shadow(
        self, shadow: ServedModel, payload: Any, decode: Decode, rid: str, route: str,
        started_ms: int,
    ) -> None:  # fmt: skip
        """A shadow's prediction: reported, never answered; its failures touch nobody."""
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        decoded: Decoded | None = None
        output: Any = None
        status = 200
        try:
            decoded, data = model_input(shadow, decode, payload)
            async with asyncio.timeout_at(deadline):
                output = await self.batcher(shadow).predict(data, len(data), deadline)
        except LoopmlError as e:
            status = status_for(e)
        except TimeoutError:
            status = 504
        except Exception:
            log.exception("shadow model %s %s failed", shadow.name, shadow.version)
            status = 500
        try:
            inputs = plain(decoded.data if decoded is not None else payload)
            outputs = plain(predictions(output)) if status == 200 else None
        except Exception:
            log.exception("cannot report shadow prediction of request %s", rid)
            inputs = outputs = None
        latency_ms = (time.perf_counter() - start) * 1000
        event = PredictionEvent(rid, shadow.name, shadow.version, route, inputs, outputs,
                                latency_ms, started_ms, status, shadow=True)  # fmt: skip
        self._emit(event)

    def _emit(self, event: PredictionEvent) -> None:
        if self.on_prediction is None:
            return
        try:
            self.on_prediction(event)
        except Exception:
            log.exception("on_prediction failed for request %s", event.request_id)

    def feedback(self, payload: Any) -> FeedbackEvent:
        """Check a ``/feedback`` body; the event goes to ``on_feedback`` after the answer."""
        if not isinstance(payload, dict):
            raise InvalidArgument("send an object with 'request_id' and 'ground_truth'")
        unknown = set(payload) - {"request_id", "ground_truth", "deployment"}
        if unknown:
            raise InvalidArgument(f"unknown fields {sorted(unknown)}")
        rid, deployment = payload.get("request_id"), payload.get("deployment")
        if not isinstance(rid, str) or not rid or len(rid) > 128:
            raise InvalidArgument("'request_id' must be the X-Request-ID of an earlier answer")
        if "ground_truth" not in payload:
            raise InvalidArgument("'ground_truth' is missing")
        if deployment is not None and (not isinstance(deployment, str) or len(deployment) > 128):
            raise InvalidArgument("'deployment' must be a deployment name")
        return FeedbackEvent(rid, payload["ground_truth"], deployment, int(time.time() * 1000))

    def emit_feedback(self, event: FeedbackEvent) -> None:
        if self.on_feedback is None:
            return
        try:
            self.on_feedback(event)
        except Exception:
            log.exception("on_feedback failed for request %s", event.request_id)


def model_input(served: ServedModel, decode: Decode, payload: Any) -> tuple[Decoded, Any]:
    """The request decoded, and its signature-checked model input (a DataFrame or an array)."""
    try:
        decoded = decode(payload, served)
        prepared = served.predictor.prepare(decoded.data)
        if isinstance(prepared, list | tuple):
            import numpy as np

            prepared = np.asarray(prepared)
        rows = len(prepared)
    except LoopmlError:
        raise
    except RecursionError:
        raise InvalidArgument("the input is nested too deeply") from None
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"cannot read the input: {str(e)[:300]}") from e
    if rows == 0:
        raise InvalidArgument("the input holds no rows")
    return decoded, prepared
