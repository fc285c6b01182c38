"""``codec-server``: Temporal's remote codec protocol for the web UI (and
``temporal ... --codec-endpoint``), so they show decoded payloads while the
server's database holds only ciphertext."""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from cli.common import CliError, Context
from settings.codec import load_codec_settings
from temporal_plumbing.client import temporal_connect_config
from temporal_plumbing.codec import AesGcmCodec
from temporal_plumbing.environments import split_address


async def cmd_codec_server(ctx: Context) -> int:
    """``codec-server [--bind HOST:PORT]``: serve ``/encode`` and ``/decode`` with the
    PAYLOAD_KEYS codec until Ctrl-C or SIGTERM.

    Raises:
        CliError: PAYLOAD_KEYS is unset (exit 2), or the address cannot be bound.
    """
    # aiohttp only for this command: every other CLI call starts ~0.15 s sooner
    from temporal_plumbing.codec_server import build_codec_app, serve_until_signal

    codec = load_codec_settings()
    if not codec.keys:
        raise CliError("codec-server needs PAYLOAD_KEYS (ID:BASE64KEY,...): without keys "
                       "payloads are stored unencrypted and need no codec server", code=2)
    bind = ctx.args.bind or codec.codec_server_bind
    try:
        host, port = split_address(bind)
    except ValueError:
        raise CliError(f"--bind {bind!r} is not HOST:PORT", code=2) from None
    origins = codec.allowed_origins(ctx.settings.temporal_ui_url)
    token = codec.codec_server_token.get_secret_value() if codec.codec_server_token else None
    namespace = temporal_connect_config().get("namespace") or "default"
    app = build_codec_app(AesGcmCodec(codec.keys), origins, token=token, namespaces={namespace})

    url = codec.codec_server_url
    if ctx.args.bind and urlsplit(url).port != port:  # moved: the UI would look elsewhere
        url_hint = (f"start `dev-server` with CODEC_SERVER_URL=http://{host}:{port} "
                    f"so the web UI uses it (CODEC_SERVER_URL is {url})")
    else:
        url_hint = f"the web UI uses it with `dev-server` (CODEC_SERVER_URL={url})"

    def ready() -> None:
        print(f"codec server on http://{host}:{port} for namespace {namespace!r} "
              f"(key {codec.keys[0][0]!r} encrypts; CORS for {', '.join(origins)}; "
              f"{'bearer token required' if token else 'no token'}); {url_hint}. "
              "Ctrl-C stops it", flush=True)

    try:
        await serve_until_signal(app, host, port, ready)
    except OSError as err:
        raise CliError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``codec-server``."""
    p = sub.add_parser("codec-server", help="serve the payload codec to the web UI "
                       "(needs PAYLOAD_KEYS)")
    p.add_argument("--bind", help="HOST:PORT to listen on (default CODEC_SERVER_BIND, "
                   "127.0.0.1:8081)")
    p.set_defaults(command=cmd_codec_server)
