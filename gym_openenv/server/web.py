"""``/web/``: a page to watch, play and debug an environment in a browser.

Off by default; ``python -m gym_openenv.server ... --web`` (or ``OPENENV_WEB=1``,
or ``gym-openenv serve NAME --web``) adds these routes to the app:

* ``GET /web/``: the page (static HTML, JavaScript and CSS from ``web_page/``
  under ``/web/static/``, no build step); ``GET /web`` redirects to it;
* ``GET /web/info``: ``/metadata``, ``/schema``, the spaces and the session
  limits, for the page to build its form from;
* ``WS /web/ws``: an OpenEnv session exactly like ``/ws`` (same messages, same
  session cap, same idle reaper), except that image fields of observations
  (``uint8`` ``(H, W)``/``(H, W, 1|3|4)`` boxes over 0..255) arrive as PNG
  data URLs instead of lists of numbers.

Every URL the page uses, and every redirect, is relative to the page, so it
works unchanged behind a reverse proxy that serves the server under a path
prefix (jupyter-server-proxy's ``/proxy/8000/``, an ingress at ``/envs/pong/``,
``uvicorn --root-path``), whether or not the proxy tells the server its prefix.

Auth is the server's bearer token. A browser cannot put a header on a
WebSocket, so ``/web/?token=TOKEN`` (or ``/web?token=TOKEN``) trades the token
for a cookie (HttpOnly, SameSite=Strict, sent only to the page's paths) and
redirects to the page; the page's requests carry that cookie. ``/web/ws`` also
refuses handshakes from another origin.
"""

import base64
import hashlib
import hmac
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from starlette.requests import HTTPConnection
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from gymnasium import spaces

from gym_openenv.protocol import encode_json
from gym_openenv.server.host import EnvHost
from gym_openenv.server.openenv_ws import serve_openenv_session
from gym_openenv.spaces import ModelSpec, describe

__all__ = ["add_web_routes", "image_fields", "is_web_path", "png_bytes", "web_authorized"]

PAGE_DIR = Path(__file__).with_name("web_page")
PNG_DATA_URL = "data:image/png;base64,"
_PNG_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: grey, RGB, RGBA


def is_web_path(path: str) -> bool:
    return path == "/web" or path.startswith("/web/")


def _route_path(scope: Any) -> str:
    """The path the app routes on: the request's path without the ``root_path``
    in front of it (``uvicorn --root-path``, a ``Mount``), as Starlette's router
    strips it."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


# --- auth ---------------------------------------------------------------------


def _cookie(token: str) -> tuple[str, str]:
    """The cookie that stands for ``token``: derived from it, never the token itself.
    Its name depends on the token too, so servers on other ports of the same
    host (cookies ignore ports) keep their own."""
    value = hmac.new(token.encode(), b"gym_openenv web page", hashlib.sha256).hexdigest()
    return f"openenv_web_{value[:12]}", value


def web_authorized(connection: HTTPConnection, token: str | None) -> bool:
    """Whether a request (or WebSocket handshake) without the bearer header may
    pass: the page's cookie on any ``/web`` path, or ``?token=`` on the page
    itself (``/web`` or ``/web/``)."""
    if token is None:
        return True
    path = _route_path(connection.scope)
    if not is_web_path(path):
        return False
    name, value = _cookie(token)
    if hmac.compare_digest(connection.cookies.get(name, "").encode(), value.encode()):
        return True
    query_token = connection.query_params.get("token")
    return path in ("/web", "/web/") and query_token is not None and hmac.compare_digest(query_token.encode(), token.encode())


def _same_origin(headers: Any) -> bool:
    """A browser names the page that opened a WebSocket in ``Origin``; only our own may.

    Our own host is the one the browser asked for: ``Host``, or, behind a proxy
    that rewrites ``Host`` to reach us, the one it forwards in
    ``X-Forwarded-Host``. A page's script cannot set either header on a
    WebSocket, so another site's page cannot pass for ours.
    """
    origin = headers.get("origin")
    if origin is None:  # not a browser: the bearer token or cookie decides alone
        return True
    ours = {headers.get("host", ""), *headers.get("x-forwarded-host", "").split(",")}
    ours = {host.strip().lower() for host in ours} - {""}
    return urlsplit(origin).netloc.lower() in ours


# --- images -------------------------------------------------------------------


def png_bytes(image: np.ndarray) -> bytes:
    """A ``uint8`` ``(H, W)`` or ``(H, W, 1|3|4)`` array -> a PNG file (zlib, no imaging library)."""
    if image.dtype != np.uint8 or not _is_image_shape(image.shape):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 1|3|4) array, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    rows = np.zeros((height, 1 + width * channels), np.uint8)  # each row: filter type 0, then pixels
    rows[:, 1:] = image.reshape(height, width * channels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPES[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")


def _is_image_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in _PNG_COLOR_TYPES)


def image_fields(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Observation fields a person reads as a picture (``uint8`` boxes of image
    shape over 0..255), with their shapes."""
    return {
        f.name: f.space.shape
        for f in spec.space_fields
        if isinstance(f.space, spaces.Box)
        and f.space.dtype == np.uint8
        and _is_image_shape(f.space.shape)
        and int(f.space.low.min()) == 0
        and int(f.space.high.max()) == 255
    }


def _page_encoder(images: dict[str, tuple[int, ...]]) -> Callable[[dict[str, Any]], str]:
    """Encode replies as OpenEnv JSON, with image fields as PNG data URLs.

    Image fields arrive as OpenEnv JSON has them, nested or flat lists; the
    shape comes from their space.
    """

    def encode(message: dict[str, Any]) -> str:
        if message.get("type") in ("observation", "partial_observation") and images:
            data = message["data"]
            fields = dict(data["observation"])
            for name in images.keys() & fields.keys():
                if fields[name] is not None:
                    pixels = np.asarray(fields[name], dtype=np.uint8).reshape(images[name])
                    fields[name] = PNG_DATA_URL + base64.b64encode(png_bytes(pixels)).decode("ascii")
            message = {**message, "data": {**data, "observation": fields}}
        return encode_json(message)

    return encode


# --- routes -------------------------------------------------------------------


def add_web_routes(app: FastAPI, host: EnvHost, bearer_authorized: Callable[[Any], bool]) -> None:
    """Serve the page on ``app``. HTTP requests reach it through the app's guard
    (bearer header, or :func:`web_authorized`); ``bearer_authorized(headers)`` is
    the app's header check, for the WebSocket."""
    token = host.settings.token

    # The page is the folder /web/, so that its relative URLs (static/app.js, info,
    # ws) land under it wherever it is served. Redirects are relative too: "web/"
    # from <prefix>/web is <prefix>/web/ whether or not a proxy that strips the
    # prefix tells us about it (jupyter-server-proxy only sends X-Forwarded-Prefix).
    @app.get("/web", include_in_schema=False)
    async def to_the_page(request: Request) -> RedirectResponse:
        query = request.url.query
        return RedirectResponse(f"web/?{query}" if query else "web/", status_code=307)

    @app.get("/web/", include_in_schema=False)
    async def page(request: Request) -> Any:
        if "token" in request.query_params and token is not None:  # trade the token for the cookie
            response = RedirectResponse("./", status_code=303)
            name, value = _cookie(token)
            # No Path attribute: the browser scopes the cookie to the folder of the
            # URL it asked for, <prefix>/web, which is root_path + /web when a proxy
            # sets root_path, and right even when it does not. So it is sent to the
            # page, its info and its WebSocket under any prefix, and nowhere else.
            response.set_cookie(name, value, path=None, httponly=True, samesite="strict")
            return response
        return FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/web/info", include_in_schema=False)
    async def info() -> dict[str, Any]:
        specs = await host.specs()
        models = {"action": specs.action, "observation": specs.observation}
        return {
            "metadata": await host.metadata(),
            "schema": {name: getattr(specs, name).json_schema() for name in ("action", "observation", "state")},
            "spaces": {name: _describe_model(spec) for name, spec in models.items()},
            "limits": {"max_sessions": host.settings.max_sessions, "idle_timeout": host.settings.idle_timeout},
        }

    @app.websocket("/web/ws")
    async def session(ws: WebSocket) -> None:
        if not (bearer_authorized(ws.headers) or web_authorized(ws, token)):
            await _refuse(ws, 401, "missing or wrong token; open /web/?token=TOKEN first")
            return
        if not _same_origin(ws.headers):
            await _refuse(ws, 403, "WebSocket opened from another origin")
            return
        images = image_fields((await host.specs()).observation)
        await serve_openenv_session(ws, host, encode=_page_encoder(images))

    app.mount("/web/static", StaticFiles(directory=PAGE_DIR), name="web-static")


async def _refuse(ws: WebSocket, status: int, detail: str) -> None:
    """Refuse a handshake with an HTTP status (close code 1008 where the server cannot send one)."""
    try:
        await ws.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    except RuntimeError:  # no denial-response extension in this ASGI server
        await ws.close(code=1008, reason=detail)


def _describe_model(spec: ModelSpec) -> dict[str, Any]:
    """The space and each field's, as a person reads them."""
    if not spec.space_fields:  # the model travels as JSON only
        space = None
    elif spec.unwrapped:
        space = describe(spec.space)
    else:  # a Dict's repr would spell out every Text charset: list the fields instead
        space = f"Dict({', '.join(f.name for f in spec.space_fields)})"
    return {
        "space": space,
        "fields": {f.name: describe(f.space) for f in spec.space_fields},
        "info_fields": [f.name for f in spec.info_fields],
    }
