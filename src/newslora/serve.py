"""Serve: a run or an export over HTTP (FastAPI + uvicorn), one process, micro-batched.

  POST /predict  {"texts": ["...", ...]} or {"text": "..."}
                 -> {"predictions": [{"label", "label_id", "probabilities": {class: p}}]}
  GET  /health   -> {"status": "ok", "model", "backend", "labels", "limits", "served"}

Requests that arrive together are collected for up to `max_wait_ms` (or until `max_batch`
texts) and run as one batch in a worker thread, so 32 concurrent clients cost a few batched
forward passes, not 32 single ones. Probabilities are calibrated: softmax(logits / T), T the
run's temperature fitted on validation rows. Every error answer is {"error": "..."}: a 4xx
naming what is wrong with the request, or a 500 (its traceback in the server's log) that fails
that request alone, never the others batched with it.
"""

import asyncio
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from newslora import NewsloraError
from newslora.data import clean_text
from newslora.predict import BACKENDS, export_meta, load_predictor, run_temperature


class RequestError(Exception):
    """A client error: answered with `status` and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class MicroBatcher:
    """Collects concurrent requests into one batch for `logits_of`, run in one worker thread."""

    def __init__(self, logits_of, max_batch=64, max_wait_s=0.005):
        self.logits_of, self.max_batch, self.max_wait_s = logits_of, max_batch, max_wait_s
        self.executor = ThreadPoolExecutor(max_workers=1)  # one forward pass at a time
        self.queue = self.task = None
        self.served = {"requests": 0, "texts": 0, "batches": 0}  # shown by /health

    def start(self):
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.executor.shutdown(wait=True)

    async def logits(self, texts):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def _loop(self):
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            if len(items[0][0]) < self.max_batch:
                await asyncio.sleep(self.max_wait_s)  # let requests sent meanwhile join
            count = len(items[0][0])
            while count < self.max_batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
                count += len(items[-1][0])
            texts = [text for batch, _ in items for text in batch]
            self.served["requests"] += len(items)
            self.served["texts"] += len(texts)
            self.served["batches"] += 1
            try:
                logits = await loop.run_in_executor(self.executor, self.logits_of, texts)
            except Exception as e:  # a failed batch fails its requests, not the server
                if len(items) == 1:
                    _settle(items[0][1], error=e)
                else:  # nor another client's: each request alone, so only its own fails
                    for batch, future in items:
                        await self._run_alone(loop, batch, future)
                continue
            start = 0
            for batch, future in items:
                _settle(future, logits[start : start + len(batch)])
                start += len(batch)

    async def _run_alone(self, loop, texts, future):
        try:
            _settle(future, await loop.run_in_executor(self.executor, self.logits_of, texts))
        except Exception as e:
            _settle(future, error=e)


def _settle(future, result=None, error=None):
    if future.done():  # the client has gone away
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def create_app(
    path, backend="auto", max_texts=64, max_bytes=1_000_000, max_batch=64, max_wait_ms=5.0
):
    """The FastAPI app for a run directory or an hf/onnx export folder."""
    path = Path(path)
    cfg, logits_of = load_predictor(path, backend)
    meta = export_meta(path)
    kind = meta["format"] if meta else "run"
    temperature = meta["temperature"] if meta else run_temperature(path)
    labels = list(cfg.data.labels)
    batcher = MicroBatcher(partial(logits_of, progress=False), max_batch, max_wait_ms / 1000)
    limits = {"max_texts": max_texts, "max_bytes": max_bytes, "max_batch": max_batch}

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="newslora", summary="news topic classifier", lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def request_error(request, error):
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(HTTPException)  # an unknown path, GET /predict: the same shape
    async def http_error(request, error):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(Exception)  # a bug: JSON for the client, the traceback in the log
    async def internal_error(request, error):
        message = f"internal error ({type(error).__name__}); the server's log has the details"
        return JSONResponse({"error": message}, status_code=500)

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": str(path),
            "format": kind,
            "backend": BACKENDS[kind],
            "labels": labels,
            "temperature": temperature,
            "limits": limits,
            "served": batcher.served,
        }

    @app.post("/predict")
    async def predict(request: Request):
        texts = parse_texts(await read_body(request, max_bytes), max_texts)
        if cfg.data.clean:  # as `newslora predict` does: AG News' escapes repaired
            texts = [clean_text(t) for t in texts]
        logits = torch.as_tensor(await batcher.logits(texts)) / temperature
        probs = torch.softmax(logits, dim=1).numpy()
        return {"predictions": [prediction(p, labels) for p in probs]}

    return app


async def read_body(request, max_bytes):
    """The request body, refused (413) as soon as it passes `max_bytes`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(
            413, f"request body is {int(declared):,} bytes; the limit is {max_bytes:,}"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(413, f"request body passes the limit of {max_bytes:,} bytes")
    return bytes(body)


def parse_texts(body, max_texts):
    """{"texts": [str, ...]} or {"text": str} -> a list of non-empty strings, or a 4xx."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"request body is not JSON ({e})") from None
    if not isinstance(doc, dict) or ("texts" in doc) == ("text" in doc):
        raise RequestError(422, 'send {"texts": ["...", ...]} or {"text": "..."}')
    texts = doc["texts"] if "texts" in doc else [doc["text"]]
    if not isinstance(texts, list) or not texts:
        raise RequestError(422, "'texts' must be a non-empty list of strings")
    if len(texts) > max_texts:
        raise RequestError(413, f"{len(texts):,} texts in one request; the limit is {max_texts:,}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(422, f"texts[{i}] must be a string, got {type(text).__name__}")
        texts[i] = text = _without_lone_surrogates(text)
        if not text.strip():
            raise RequestError(422, f"texts[{i}] is empty")
    return texts


def _without_lone_surrogates(text):
    """JSON may escape half of a UTF-16 pair (\\ud83d: a client that cut a text inside an
    emoji); no tokenizer takes one. Dropped, as pandas' JSON reader drops them for
    `newslora predict` on a JSON-lines file."""
    return text.encode("utf-8", "ignore").decode("utf-8")


def prediction(probs, labels):
    best = int(probs.argmax())
    return {
        "label": labels[best],
        "label_id": best,
        "probabilities": {name: float(p) for name, p in zip(labels, probs, strict=True)},
    }


def serve(path, host="127.0.0.1", port=8000, keep_alive_s=75, **options):
    """Run the app with uvicorn until interrupted.

    `keep_alive_s` is how long an idle connection stays open. uvicorn's default (5 s) equals
    httpx's pool expiry, so a client reusing a connection at that moment races the server's
    close and gets a reset; proxies and load balancers keep idle connections for 60 s, and the
    backend should outlast them (75 s is nginx's default).
    """
    import uvicorn

    _check_free(host, port)  # before the model loads: uvicorn would say it after, in a log line
    app = create_app(path, **options)
    print(f"serving {path} on http://{host}:{port} (POST /predict, GET /health)", flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=keep_alive_s,
    )


def _check_free(host, port):
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else str(e)
        raise NewsloraError(f"{host}:{port}: cannot listen there ({why})") from None
