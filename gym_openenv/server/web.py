"""``/web``: a page to watch, play and debug an environment in a browser.

Off by default; ``python -m gym_openenv.server ... --web`` (or ``OPENENV_WEB=1``,
or ``gym-openenv serve NAME --web``) adds these routes to the app:

* ``GET /web``: the page (static HTML, JavaScript and CSS from ``web_page/``,
  no build step);
* ``GET /web/info``: ``/metadata``, ``/schema``, the spaces and the session
  limits, for the page to build its form from;
* ``WS /web/ws``: an OpenEnv session exactly like ``/ws`` (same messages, same
  session cap, same idle reaper), except that image fields of observations
  (``uint8`` ``(H, W)``/``(H, W, 1|3|4)`` boxes over 0..255) arrive as PNG
  data URLs instead of lists of numbers.

Auth is the server's bearer token. A browser cannot put a header on a
WebSocket, so ``/web?token=TOKEN`` trades the token for a cookie (HttpOnly,
SameSite=Strict, path ``/web``) and redirects to ``/web``; the page's requests
carry that cookie. ``/web/ws`` also refuses handshakes from another origin.
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


# --- auth ---------------------------------------------------------------------


def _cookie(token: str) -> tuple[str, str]:
    """The cookie that stands for ``token``: derived from it, never the token itself.
    Its name depends on the token too, so servers on other ports of the same
    host (cookies ignore ports) keep their own."""
    value = hmac.new(token.encode(), b"gym_openenv web page", hashlib.sha256).hexdigest()
    return f"openenv_web_{value[:12]}", value


def web_authorized(path: str, cookies: dict[str, str], query_token: str | None, token: str | None) -> bool:
    """Whether a request for ``path`` without the bearer header may pass: the
    page's cookie on any ``/web`` path, or ``?token=`` on ``/web`` itself."""
    if token is None:
        return True
    if not is_web_path(path):
        return False
    name, value = _cookie(token)
    if hmac.compare_digest(cookies.get(name, "").encode(), value.encode()):
        return True
    return path == "/web" and query_token is not None and hmac.compare_digest(query_token.encode(), token.encode())


def _same_origin(headers: Any) -> bool:
    """A browser names the page that opened a WebSocket in ``Origin``; only our own may."""
    origin = headers.get("origin")
    if origin is None:  # not a browser: the bearer token or cookie decides alone
        return True
    return urlsplit(origin).netloc == headers.get("host", "")


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

    @app.get("/web", include_in_schema=False)
    async def page(request: Request) -> Any:
        if "token" in request.query_params and token is not None:  # trade the token for the cookie
            response = RedirectResponse("/web", status_code=303)
            name, value = _cookie(token)
            response.set_cookie(name, value, path="/web", httponly=True, samesite="strict")
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
        if not (bearer_authorized(ws.headers) or web_authorized("/web/ws", ws.cookies, None, token)):
            await _refuse(ws, 401, "missing or wrong token; open /web?token=TOKEN first")
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
