"""``agents serve EXPORT_DIR``: an exported agent behind an OpenAI-compatible HTTP API.

Built on FastAPI and uvicorn. Routes:

* ``POST /v1/chat/completions``: non-streaming, or streaming as server-sent events
  (``chat.completion.chunk`` objects, then ``data: [DONE]``). A tool-using agent (its card has
  tools, mode ``tools`` or ``code``) runs its whole tool loop on the last user message, Python in
  the sandbox as in runs; the reply is its final answer and the ``agent`` field of the response
  holds the episode (status, steps, tool uses, messages). A plain model answers the
  conversation, the card's system prompt first when the request has none; an agent that learnt
  strategies gets the ones retrieved for the conversation below it, as in its run, and the
  response's ``strategies`` field lists their ids.
* ``GET /v1/models``: the one model, named as the card names it;
* ``GET /v1/agent_card``: the agent card;
* ``GET /health``: liveness, without a token.

Limits: one model call at a time (in-process engines are not re-entrant) with at most
``max_queue`` requests waiting (more get 429), request bodies up to ``max_body_bytes`` (413),
``max_tokens`` up to ``max_tokens_limit`` (400) and ``timeout_s`` per request (504; the model
call itself finishes in the background). With a ``token`` every ``/v1`` route wants
``Authorization: Bearer <token>`` (401). Every error has OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``.

A streamed reply of a plain model (one choice) comes token by token as the in-process engine
generates it (``Engine.stream``); a tool-using agent's answer, or several choices, are sent in
pieces once done, so a client's streaming code works the same either way. For throughput, serve
the exported weights with vLLM's own OpenAI server and point clients (or ``agents`` model specs)
at it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.export import AGENT_MODES, ExportedAgent
from agents.models.base import ChatRequest

log = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    """Limits of a server.

    Attributes:
        token: Bearer token every ``/v1`` request must carry (None: open).
        max_queue: Requests allowed to wait for the model; more are refused with 429.
        max_body_bytes: Largest request body.
        max_tokens_limit: Largest ``max_tokens`` a request may ask for.
        default_max_tokens: ``max_tokens`` when a request gives none.
        timeout_s: Seconds a request may take, waiting included.
        max_steps: Steps of a tool-using agent's episode.
    """

    token: str | None = None
    max_queue: int = 8
    max_body_bytes: int = 1_000_000
    max_tokens_limit: int = 2048
    default_max_tokens: int = 512
    timeout_s: float = 300.0
    max_steps: int = 5


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = (
            status,
            message,
            kind,
            code,
            param,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


class ChatBody(BaseModel):
    """The request fields this server reads; others (``user``, ``logprobs``...) are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False


def _invalid(exc: ValidationError) -> ApiError:
    problem = exc.errors()[0]
    where = ".".join(str(p) for p in problem["loc"]) or None
    return ApiError(400, f"{where}: {problem['msg']}", "invalid_request_error", param=where)


class AgentServer:
    """What the routes share: the agent, the limits and the one model slot."""

    def __init__(self, agent: ExportedAgent, settings: ServeSettings) -> None:
        self.agent = agent
        self.settings = settings
        self.slot = asyncio.Lock()
        self.waiting = 0
        self.created = int(time.time())

    @property
    def name(self) -> str:
        return self.agent.card.name

    def check(self, body: ChatBody) -> int:
        """The request's ``max_tokens`` after the checks that need no model."""
        if body.model != self.name:
            raise ApiError(
                404,
                f"the model {body.model!r} does not exist; this server has {self.name!r}",
                "invalid_request_error",
                code="model_not_found",
                param="model",
            )
        limit = self.settings.max_tokens_limit
        tokens = body.max_completion_tokens or body.max_tokens or self.settings.default_max_tokens
        if tokens > limit:
            raise ApiError(
                400,
                f"max_tokens {tokens} is over this server's limit of {limit}",
                "invalid_request_error",
                param="max_tokens",
            )
        if self.agent.card.mode not in AGENT_MODES:
            raise ApiError(
                400,
                f"{self.name} is a {self.agent.card.mode} agent; it runs in its scheme's own loop "
                f"(agents chat {self.agent.card.scheme})",
                "invalid_request_error",
            )
        if self.tool_agent and body.n != 1:
            raise ApiError(
                400, "a tool-using agent answers with n = 1", "invalid_request_error", param="n"
            )
        return tokens

    @property
    def tool_agent(self) -> bool:
        return bool(self.agent.card.tools)

    def answer(self, body: ChatBody, max_tokens: int) -> tuple[list[tuple[str, str]], dict]:
        """``[(text, finish_reason)]`` per choice and extra fields (blocking; in a thread)."""
        if self.tool_agent:
            question = next(
                (
                    str(m.get("content") or "")
                    for m in reversed(body.messages)
                    if m.get("role") == "user"
                ),
                "",
            )
            if not question.strip():
                raise ApiError(
                    400,
                    "the request has no user message",
                    "invalid_request_error",
                    param="messages",
                )
            episode = self.agent.run(
                question,
                max_steps=self.settings.max_steps,
                max_tokens=max_tokens,
                temperature=body.temperature,
            )
            finish = "stop" if episode.status == "answered" else "length"
            extra = {
                "agent": {
                    "status": episode.status,
                    "steps": episode.steps,
                    "tool_uses": dict(episode.tool_uses),
                    "messages": episode.messages,
                }
            }
            return [(episode.answer or "", finish)], extra
        request, strategies = self.model_request(body, max_tokens)
        result = self.agent.engine.generate([request])[0]
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        }
        choices = [
            (c.text, c.finish_reason if c.finish_reason != "error" else "stop")
            for c in result.completions
        ]
        extra: dict[str, Any] = {"usage": usage}
        if self.agent.card.strategies:
            extra["strategies"] = strategies
        return choices, extra

    def model_request(self, body: ChatBody, max_tokens: int) -> tuple[ChatRequest, list[int]]:
        """A plain model's request: the card's system prompt and the strategies retrieved for
        the conversation (their ids are returned too), then the body's sampling settings."""
        messages, strategies = self.agent.prompt(body.messages)
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        request = ChatRequest(
            messages=messages,
            n=body.n,
            temperature=body.temperature,
            top_p=body.top_p,
            max_tokens=max_tokens,
            stop=tuple(stop),
            seed=body.seed,
        )
        return request, strategies

    async def run(self, body: ChatBody, max_tokens: int) -> tuple[list[tuple[str, str]], dict]:
        """:meth:`answer` in a worker thread, one at a time, within the queue and time limits."""
        self._admit()
        self.waiting += 1
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                async with self.slot:
                    return await asyncio.to_thread(self.answer, body, max_tokens)
        except TimeoutError:
            raise self._timeout() from None
        finally:
            self.waiting -= 1

    def streams_tokens(self, body: ChatBody) -> bool:
        """A streamed request the engine answers token by token: a plain model, one choice."""
        return body.stream and not self.tool_agent and body.n == 1

    async def open_stream(
        self, body: ChatBody, max_tokens: int
    ) -> tuple[AsyncIterator[str], list[int]]:
        """Wait for the model slot (queue and time limits as :meth:`run`), then return the reply's
        pieces as the engine generates them; the slot is held until the last piece or until
        the client goes away, and the whole stream stays within ``timeout_s`` (it then ends
        with what was generated). Also returns the ids of the strategies retrieved."""
        self._admit()
        self.waiting += 1
        deadline = time.monotonic() + self.settings.timeout_s
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await self.slot.acquire()
        except TimeoutError:
            self.waiting -= 1
            raise self._timeout() from None
        request, strategies = self.model_request(body, max_tokens)

        async def pieces() -> AsyncIterator[str]:
            source = self.agent.engine.stream(request)
            try:
                while time.monotonic() < deadline:
                    piece = await asyncio.to_thread(next, source, None)
                    if piece is None:
                        break
                    yield piece
            finally:
                await asyncio.to_thread(source.close)  # stops the generation, in its thread
                self.slot.release()
                self.waiting -= 1

        return pieces(), strategies

    def _admit(self) -> None:
        if self.waiting >= self.settings.max_queue + 1:
            raise ApiError(
                429, "the server is busy; try again shortly", "rate_limit_error", code="server_busy"
            )

    def _timeout(self) -> ApiError:
        return ApiError(
            504,
            f"the request took over {self.settings.timeout_s:g} s",
            "timeout_error",
            code="timeout",
        )


def _completion(server: AgentServer, choices: list[tuple[str, str]], extra: dict) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": server.name,
        "choices": [
            {
                "index": n,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
            for n, (text, finish) in enumerate(choices)
        ],
        **extra,
    }


def _pieces(text: str, size: int = 16) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _chunk_event(
    server: AgentServer, ident: str, created: int, index: int, delta: dict, finish: str | None
) -> str:
    chunk = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": server.name,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


async def _token_events(
    server: AgentServer, pieces: AsyncIterator[str], strategies: list[int]
) -> AsyncIterator[str]:
    """Server-sent events of a reply streamed token by token; the first chunk names the
    strategies retrieved for the conversation (when the agent has any)."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    first = _chunk_event(server, ident, created, 0, {"role": "assistant", "content": ""}, None)
    if server.agent.card.strategies:
        data = json.loads(first[len("data: ") :])
        first = f"data: {json.dumps({**data, 'strategies': strategies})}\n\n"
    yield first
    async for piece in pieces:
        yield _chunk_event(server, ident, created, 0, {"content": piece}, None)
    yield _chunk_event(server, ident, created, 0, {}, "stop")
    yield "data: [DONE]\n\n"


def _chunks(server: AgentServer, choices: list[tuple[str, str]]) -> Iterator[str]:
    """Server-sent events of finished replies: a role chunk, content pieces, a finish chunk per
    choice, then DONE."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    for index, (text, finish) in enumerate(choices):
        role = {"role": "assistant", "content": ""}
        yield _chunk_event(server, ident, created, index, role, None)
        for piece in _pieces(text):
            yield _chunk_event(server, ident, created, index, {"content": piece}, None)
        yield _chunk_event(server, ident, created, index, {}, finish)
    yield "data: [DONE]\n\n"


def create_app(agent: ExportedAgent, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``agent``."""
    settings = settings or ServeSettings()
    server = AgentServer(agent, settings)
    app = FastAPI(title=f"{agent.card.name} (agents-distill)", docs_url=None, redoc_url=None)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        log.exception("request failed")
        return JSONResponse(
            ApiError(500, f"internal error: {exc}", "server_error").body(), status_code=500
        )

    @app.middleware("http")
    async def limits(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith("/v1"):
            if settings.token is not None:
                given = request.headers.get("authorization", "")
                if given != f"Bearer {settings.token}":
                    error = ApiError(
                        401,
                        "a valid bearer token is required",
                        "authentication_error",
                        code="invalid_api_key",
                    )
                    return JSONResponse(error.body(), status_code=401)
            declared = request.headers.get("content-length")
            body = await request.body()
            if (declared and int(declared) > settings.max_body_bytes) or len(
                body
            ) > settings.max_body_bytes:
                error = ApiError(
                    413,
                    f"the request body is over {settings.max_body_bytes} bytes",
                    "invalid_request_error",
                    code="request_too_large",
                )
                return JSONResponse(error.body(), status_code=413)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": server.name, "waiting": server.waiting}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {
            "id": server.name,
            "object": "model",
            "created": server.created,
            "owned_by": "agents-distill",
        }
        return {"object": "list", "data": [entry]}

    @app.get("/v1/agent_card")
    async def card() -> dict[str, Any]:
        return asdict(agent.card)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        try:
            raw = json.loads(await request.body() or b"null")
        except json.JSONDecodeError as exc:
            raise ApiError(
                400, f"the body is not JSON ({exc.msg})", "invalid_request_error"
            ) from None
        if not isinstance(raw, dict):
            raise ApiError(400, "the body must be a JSON object", "invalid_request_error")
        try:
            body = ChatBody.model_validate(raw)
        except ValidationError as exc:
            raise _invalid(exc) from None
        max_tokens = server.check(body)
        if server.streams_tokens(body):
            pieces, strategies = await server.open_stream(body, max_tokens)
            return StreamingResponse(
                _token_events(server, pieces, strategies),
                media_type="text/event-stream",
            )
        choices, extra = await server.run(body, max_tokens)
        if not body.stream:
            return _completion(server, choices, extra)

        async def events() -> AsyncIterator[str]:
            for event in _chunks(server, choices):
                yield event

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def serve(
    directory: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
) -> None:
    """Load the exported agent in ``directory`` and serve it until interrupted."""
    import uvicorn

    from agents.export import load_agent

    agent = load_agent(directory)
    try:
        uvicorn.run(create_app(agent, settings), host=host, port=port, log_level="info")
    finally:
        agent.engine.close()
