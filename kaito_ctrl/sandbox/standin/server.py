"""The stand-in's HTTP server: the request and response shapes of Kaito's inference runtimes, answered without a
model. Every answer says it comes from the sandbox stand-in of its preset.

- ``chat`` (Kaito's transformers server of the seed era): ``GET /``, ``GET /health``, ``POST /chat`` with
  ``{"prompt": ...}`` (or ``{"messages": [...]}`` for the conversational pipeline) -> ``{"Result": ...}``; a
  missing prompt is a 400 with FastAPI's ``{"detail": ...}``, a body that is not a JSON object a 422.
- ``openai`` (vLLM, and the transformers server since February 2026): ``GET /health``, ``GET /v1/models`` (the
  served model and its LoRA adapters), ``POST /v1/chat/completions``; errors as vLLM's ``{"error": {...}}``
  with 400 for a malformed request and 404 for an unknown model.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from kaito_ctrl.sandbox.standin.entrypoint import Entrypoint

API_NOTE = "sandbox stand-in, no GPU and no weights: nothing was generated"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ContainerLog:
    """The log ``kubectl logs`` shows: kwok's Logs object points at this file, which must be in the CRI
    container-log format (``<RFC 3339 time> stdout F <line>``), as a kubelet reads it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def say(self, line: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if self.path is None:
            print(line, flush=True)
            return
        with self.path.open("a") as f:
            f.write(f"{stamp} stdout F {line}\n")


CONTAINER_LOG = ContainerLog(None)


def _say(line: str) -> None:
    CONTAINER_LOG.say(line)


def answer_text(entry: Entrypoint, question: str) -> str:
    return (
        f"[kaito-ctrl sandbox stand-in for preset {entry.served_model_name} ({entry.runtime} runtime); "
        f"{API_NOTE}] You asked: {question}"
    )


def _detail(status: int, detail: Any) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


def _openai_error(status: int, message: str, kind: str, param: str | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": status}}, status=status
    )


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def chat_routes(entry: Entrypoint) -> list[web.RouteDef]:
    async def home(_: web.Request) -> web.Response:
        return web.json_response({"message": "Server is running"})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "Healthy"})

    async def chat(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if body is None:
            return _detail(422, [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}])
        if entry.pipeline == "conversational":
            messages = body.get("messages")
            if not messages:
                return _detail(400, "Conversational parameter messages required")
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                return _detail(422, [{"type": "list_type", "loc": ["body", "messages"], "msg": "Input should be a valid list"}])  # fmt: skip
            return web.json_response({"Result": answer_text(entry, str(messages[-1].get("content", "")))})
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            return _detail(422, [{"type": "string_type", "loc": ["body", "prompt"], "msg": "Input should be a valid string"}])  # fmt: skip
        if not prompt:
            return _detail(400, "Text generation parameter prompt required")
        return web.json_response({"Result": answer_text(entry, prompt)})

    return [web.get("/", home), web.get("/health", health), web.post("/chat", chat)]


def openai_routes(entry: Entrypoint) -> list[web.RouteDef]:
    created = int(time.time())

    def card(model_id: str, parent: str | None) -> dict[str, Any]:
        return {
            "id": model_id, "object": "model", "created": created, "owned_by": "vllm",
            "root": model_id if parent is None else f"/mnt/adapter/{model_id}", "parent": parent,
        }  # fmt: skip

    names = [entry.served_model_name, *entry.adapters]

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def models(_: web.Request) -> web.Response:
        data = [card(entry.served_model_name, None)] + [
            card(a, entry.served_model_name) for a in entry.adapters
        ]
        return web.json_response({"object": "list", "data": data})

    async def chat_completions(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if body is None:
            return _openai_error(400, "the request body is not a JSON object", "BadRequestError")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return _openai_error(400, "messages: a non-empty list of {role, content} is required", "BadRequestError", "messages")  # fmt: skip
        model = body.get("model", entry.served_model_name)
        if model not in names:
            return _openai_error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        text = answer_text(entry, str(messages[-1].get("content", "")))
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )  # fmt: skip

    return [web.get("/health", health), web.get("/v1/models", models), web.post("/v1/chat/completions", chat_completions)]  # fmt: skip


@web.middleware
async def _access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:
        _say(f'INFO:     {request.remote} - "{request.method} {request.path} HTTP/1.1" {e.status}')
        if e.status == 404:  # FastAPI's and vLLM's shape for an unknown path
            return web.json_response({"detail": "Not Found"}, status=404)
        if e.status == 405:
            return web.json_response({"detail": "Method Not Allowed"}, status=405)
        raise
    _say(f'INFO:     {request.remote} - "{request.method} {request.path} HTTP/1.1" {response.status}')
    return response


def make_app(entry: Entrypoint) -> web.Application:
    app = web.Application(middlewares=[_access_log], client_max_size=1024**2)
    app.add_routes(chat_routes(entry) if entry.api == "chat" else openai_routes(entry))
    return app


def banner(entry: Entrypoint, port: int) -> str:
    api = "POST /chat" if entry.api == "chat" else "GET /v1/models, POST /v1/chat/completions"
    return (
        f"kaito-ctrl sandbox stand-in for preset {entry.served_model_name}: {entry.runtime} runtime "
        f"({entry.image or 'no image'}), {api}, GET /health; {API_NOTE}. "
        f"Container port {entry.port} is served on 127.0.0.1:{port}."
    )
