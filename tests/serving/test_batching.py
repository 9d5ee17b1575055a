"""Micro-batching: shared predict calls within the limit, answers to the right callers, a poisoned
row failing only its own request, large requests in chunks; directly and over real HTTP."""

from __future__ import annotations

import asyncio
import doctest

import httpx
import numpy as np
import pytest

from loopml.errors import InvalidArgument
from loopml.server.inference import create_inference_app
from loopml.serving import batching
from loopml.serving.batching import MicroBatcher, ModelError, PredictPool, model_failure
from loopml.serving.modelset import SingleModel
from server_fixtures import uvicorn_server

from .inference_fakes import POISON, X_SIGNATURE, FakePredictor, Recorder, wrong_length


async def _predict_all(fn, inputs, *, max_batch_size, max_wait_ms=50.0, threads=1):
    """Send every input at once through one batcher; each result or exception, in order."""
    pool = PredictPool(threads)
    batcher = MicroBatcher(FakePredictor(fn).predict, pool, max_batch_size=max_batch_size,
                           max_wait_ms=max_wait_ms)  # fmt: skip
    deadline = asyncio.get_running_loop().time() + 60
    try:
        calls = [batcher.predict(X_SIGNATURE.validate({"x": xs}), len(xs), deadline)
                 for xs in inputs]  # fmt: skip
        return await asyncio.gather(*calls, return_exceptions=True)
    finally:
        pool.close()


def _inputs(count: int) -> list[list[float]]:
    """Distinct values per request (request i sends i*100, i*100+1, ...), 1 to 3 rows each."""
    return [[float(i * 100 + j) for j in range(1 + i % 3)] for i in range(count)]


def test_concurrent_requests_share_batches_within_the_limit_and_get_their_own_answers():
    recorder = Recorder()
    inputs = _inputs(40)
    results = asyncio.run(_predict_all(recorder, inputs, max_batch_size=8))
    for xs, out in zip(inputs, results, strict=True):
        assert out.tolist() == [2 * v for v in xs]
    assert max(recorder.batches) <= 8
    assert max(recorder.batches) > 1  # they did share calls
    assert sum(recorder.batches) == sum(len(xs) for xs in inputs)


def test_a_request_larger_than_the_limit_is_predicted_alone_in_chunks():
    recorder = Recorder()
    big = [float(v) for v in range(20)]
    [out, small] = asyncio.run(_predict_all(recorder, [big, [7.0]], max_batch_size=8))
    assert out.tolist() == [2 * v for v in big] and small.tolist() == [14.0]
    assert sorted(recorder.batches) == [1, 4, 8, 8]


def test_one_poisoned_row_fails_only_its_own_request():
    recorder = Recorder()
    inputs = _inputs(12)
    inputs[5] = [3.0, POISON]
    results = asyncio.run(_predict_all(recorder, inputs, max_batch_size=64))
    for i, (xs, out) in enumerate(zip(inputs, results, strict=True)):
        if i == 5:
            assert isinstance(out, InvalidArgument) and "refused this input" in out.message
            assert "ValueError" in out.message
        else:
            assert out.tolist() == [2 * v for v in xs]
    assert max(recorder.batches) > 1  # the batch failed, then every request went alone


def test_a_lone_request_does_not_wait_for_company():
    """``more_coming`` says nobody else is on the way: the request goes at once, even with a
    minute-long max wait (the bound below is a guard, not a measurement)."""
    recorder = Recorder()

    async def main() -> float:
        pool = PredictPool(1)
        batcher = MicroBatcher(FakePredictor(recorder).predict, pool, max_batch_size=8,
                               max_wait_ms=60_000, more_coming=lambda: False)  # fmt: skip
        deadline = asyncio.get_running_loop().time() + 120
        try:
            data = X_SIGNATURE.validate({"x": [21.0]})
            out = await asyncio.wait_for(batcher.predict(data, 1, deadline), 30)
            return float(out[0])
        finally:
            pool.close()

    assert asyncio.run(main()) == 42.0 and recorder.batches == [1]


def test_a_model_answering_the_wrong_number_of_rows_is_a_model_error():
    [a, b] = asyncio.run(_predict_all(wrong_length, [[1.0], [2.0, 3.0]], max_batch_size=8))
    assert isinstance(a, ModelError) and "returned 2 predictions for 1 input rows" in a.message
    assert isinstance(b, ModelError)


def test_model_failures_are_classified():
    assert isinstance(model_failure(ValueError("bad")), InvalidArgument)
    assert isinstance(model_failure(KeyError("col")), InvalidArgument)
    crashed = model_failure(RuntimeError("CUDA out of memory"))
    assert isinstance(crashed, ModelError) and "not a problem with the input" in crashed.message
    same = InvalidArgument("column 'x'")
    assert model_failure(same) is same
    with pytest.raises(InvalidArgument):
        MicroBatcher(lambda d: d, PredictPool(1), max_batch_size=0, max_wait_ms=1)
    assert batching.split(np.arange(5), [2, 3])[1].tolist() == [2, 3, 4]
    assert doctest.testmod(batching).failed == 0


def test_over_http_every_caller_gets_its_own_answer_and_batches_stay_small():
    recorder = Recorder()
    app = create_inference_app(
        SingleModel("m", "1", FakePredictor(recorder)), max_batch_size=4, max_wait_ms=20,
        max_concurrency=64, max_queue=64, predict_threads=1,
    )  # fmt: skip
    poisoned = 7

    async def call(client: httpx.AsyncClient, i: int) -> httpx.Response:
        x = POISON if i == poisoned else float(i)
        return await client.post("/predict", json={"columns": {"x": [x]}})

    async def burst(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(call(client, i) for i in range(30)))

    with uvicorn_server(app) as url:
        responses = asyncio.run(burst(url))
    for i, response in enumerate(responses):
        if i == poisoned:
            assert response.status_code == 400
            assert "refused this input" in response.json()["error"]["message"]
        else:
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == [2.0 * i]
    assert max(recorder.batches) <= 4
    assert len({r.headers["x-request-id"] for r in responses}) == 30
