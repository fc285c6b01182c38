"""Temporal's remote codec protocol over HTTP, for the web UI and ``temporal --codec-endpoint``.

``POST /encode`` and ``POST /decode`` take and return ``{"payloads": [...]}``
(the JSON form of ``temporal.api.common.v1.Payloads``). The web UI sends the
namespace in ``X-Namespace`` and, when configured, the user's token in
``Authorization``; browsers first send a CORS preflight (``OPTIONS``). The
protocol is the one of Temporal's docs ("Codec Server") and of the samples'
``encryption/codec_server.py``; this implementation adds the bearer token,
the namespace check and errors as JSON.
"""

from __future__ import annotations

import asyncio
import hmac
import signal
from collections.abc import Awaitable, Callable, Collection, Sequence

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from temporal_plumbing.codec import AesGcmCodec, PayloadDecryptionError

MAX_REQUEST_BYTES = 16 * 2**20  # a full history's payloads fit
ALLOWED_HEADERS = "content-type,x-namespace,authorization"

CodecFn = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


def build_codec_app(codec: AesGcmCodec, origins: Collection[str], token: str | None = None,
                    namespaces: Collection[str] | None = None) -> web.Application:
    """The codec server's aiohttp application.

    Args:
        codec: encrypts (``/encode``) and decrypts (``/decode``).
        origins: browser origins (``http://localhost:8233``) that CORS lets call it.
        token: when set, every POST needs ``Authorization: Bearer <token>`` (else 401).
        namespaces: when set, a request whose ``X-Namespace`` names another
            namespace is refused (403); a request without the header is served.

    Errors are JSON ``{"error": message}``: 400 for a body that is not Payloads
    JSON or a payload that does not decrypt, 401, 403 as above.
    """
    allowed = {o.rstrip("/") for o in origins}

    def cors(req: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        origin = req.headers.get(hdrs.ORIGIN)
        if origin and origin.rstrip("/") in allowed:
            resp.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            resp.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST, OPTIONS"
            resp.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ALLOWED_HEADERS
            resp.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
            resp.headers[hdrs.VARY] = "Origin"
        return resp

    def error(req: web.Request, status: int, message: str) -> web.StreamResponse:
        return cors(req, web.json_response({"error": message}, status=status))

    async def preflight(req: web.Request) -> web.StreamResponse:
        return cors(req, web.Response())

    async def apply(fn: CodecFn, req: web.Request) -> web.StreamResponse:
        if token is not None:
            given = req.headers.get(hdrs.AUTHORIZATION, "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return error(req, 401, "missing or wrong bearer token")
        namespace = req.headers.get("X-Namespace")
        if namespaces is not None and namespace and namespace not in namespaces:
            return error(req, 403, f"namespace {namespace!r} is not served here")
        try:
            payloads = json_format.Parse(await req.read(), Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as err:
            return error(req, 400, f"the body is not Payloads JSON: {err}")
        try:
            result = await fn(list(payloads.payloads))
        except PayloadDecryptionError as err:
            return error(req, 400, str(err))
        body = json_format.MessageToJson(Payloads(payloads=result))
        return cors(req, web.Response(text=body, content_type="application/json"))

    async def encode(req: web.Request) -> web.StreamResponse:
        return await apply(codec.encode, req)

    async def decode(req: web.Request) -> web.StreamResponse:
        return await apply(codec.decode, req)

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app.add_routes([web.post("/encode", encode), web.post("/decode", decode),
                    web.options("/encode", preflight), web.options("/decode", preflight)])
    return app


async def start_codec_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on ``host:port``; stop it with ``await runner.cleanup()``.

    Raises:
        OSError: the port is taken or the host cannot be bound.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def serve_until_signal(app: web.Application, host: str, port: int,
                             ready: Callable[[], None] = lambda: None) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM; ``ready`` is called
    once it listens."""
    runner = await start_codec_server(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()

