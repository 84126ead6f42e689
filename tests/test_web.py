"""The /web page: Playwright drives Debian's Chromium against real server processes.

Field names come from each server's ``/schema`` (the image field is the uint8
box the page shows as ``<img>``), so the tests hold while models are renamed.
Screenshots go to ``$OPENENV_TEST_ARTIFACTS/web`` (default: pytest's temporary
folder).
"""

import asyncio
import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import ale_py
import gymnasium as gym
import httpx
import numpy as np
import pytest
import websockets.sync.client
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gym_openenv.providers import LocalProcessProvider
from gym_openenv.registry import find
from gym_openenv.server.web import png_bytes

gym.register_envs(ale_py)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
WAIT_MS = 180_000  # generous: the machine is shared, and Chromium, ALE and bwrap start slowly
TOKEN = "web-page-test-token"
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("OPENENV_TEST_ARTIFACTS")
    folder = Path(root) / "web" if root else tmp_path_factory.mktemp("web")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def web_server(name: str, kwargs: dict | None = None, env: dict[str, str] | None = None, web_flag: bool = True) -> Iterator[str]:
    entry = find(name)
    args = ["--web"] if web_flag else []
    provider = LocalProcessProvider(entry.environment, kwargs if kwargs is not None else dict(entry.kwargs), server_args=args, env=env, startup_timeout=300)
    with provider:
        yield provider.base_url


@contextmanager
def served_by_the_cli(*args: str) -> Iterator[str]:
    """``gym-openenv serve ARGS --port 0``; yields the URL the server reports."""
    log = tempfile.TemporaryFile(mode="w+")  # the server logs every request: a pipe nobody reads would fill
    process = subprocess.Popen(
        [sys.executable, "-m", "gym_openenv.cli", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,  # its own process group, so stopping it takes its children too
    )

    def server_log() -> str:
        log.seek(0)
        return log.read()

    try:
        line = process.stdout.readline()  # the launcher's first line: OPENENV_LISTENING <url>
        assert line.startswith("OPENENV_LISTENING "), line + server_log()
        url = line.split()[1]
        for _ in range(600):
            assert process.poll() is None, server_log()
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"{url} never answered /health\n{server_log()}")
        yield url
    finally:
        _stop_group(process)
        log.close()


@contextmanager
def web_page(browser: Browser, url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(url)
        expect(page.locator("#status")).to_have_text(re.compile("ready"))
        yield page
        assert not problems, f"JavaScript errors on the page: {problems}"
    finally:
        context.close()


def operations(page: Page) -> int:
    return int(page.evaluate("Number(document.body.dataset.operations || 0)"))


def answered(page: Page, act: Callable[[], None]) -> None:
    """Do ``act`` (a click, a key) and wait until the page has the server's answer."""
    before = operations(page)
    act()
    page.wait_for_function(f"Number(document.body.dataset.operations || 0) > {before}", timeout=WAIT_MS)


def press(page: Page, button: str) -> None:
    answered(page, page.get_by_role("button", name=button, exact=True).click)


def schema_of(url: str) -> dict:
    return httpx.get(f"{url}/schema", timeout=60).json()


def space_fields(model: dict, kind: str) -> list[str]:
    return [name for name, prop in model["properties"].items() if (prop.get("x-gym-space") or {}).get("type") == kind]


def image_field(schema: dict) -> str:
    (name,) = [
        name
        for name, prop in schema["observation"]["properties"].items()
        if (prop.get("x-gym-space") or {}).get("dtype") == "|u1" and len(prop["x-gym-space"]["shape"]) in (2, 3)
    ]
    return name


def frame(page: Page, field: str) -> np.ndarray:
    """The <img> the page shows for ``field``, decoded."""
    src = page.locator(f'#images img[data-field="{field}"]').get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


# --- the PNG encoder ------------------------------------------------------------


@pytest.mark.parametrize("shape", [(210, 160, 3), (84, 84), (7, 5, 4), (3, 9, 1)])
def test_png_bytes_decode_to_the_same_pixels(shape):
    image = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(image))))
    assert np.array_equal(decoded, image.reshape(shape[:2]) if shape[-1:] == (1,) else image)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros(4, np.uint8)])
def test_png_bytes_refuse_what_is_not_an_image(bad):
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(bad)


# --- switch and auth -------------------------------------------------------------


def test_the_page_is_off_unless_asked_for(echo_server):
    assert httpx.get(f"{echo_server}/web", timeout=30).status_code == 404
    with pytest.raises(websockets.exceptions.InvalidStatus):
        websockets.sync.client.connect(echo_server.replace("http", "ws") + "/web/ws", open_timeout=30)


def test_token_is_traded_for_a_cookie_scoped_to_the_page(browser):
    # OPENENV_WEB=1 switches the page on as --web does.
    with web_server("echo", env={"OPENENV_TOKEN": TOKEN, "OPENENV_WEB": "1"}, web_flag=False) as url:
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.get("/web").status_code == 401
            assert http.get("/web", params={"token": "wrong"}).status_code == 401
            # /web (the address people are given) leads to the page, the folder /web/, token and all;
            # both redirects are relative, so they keep any prefix a proxy put in front.
            to_the_page = http.get("/web", params={"token": TOKEN})
            assert to_the_page.status_code == 307 and to_the_page.headers["location"] == f"web/?token={TOKEN}"
            login = http.get("/web/", params={"token": TOKEN})
            assert login.status_code == 303 and login.headers["location"] == "./"
            cookie = login.headers["set-cookie"]
            assert TOKEN not in cookie and "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
            assert "path=" not in cookie.lower()  # the browser scopes it to the folder it asked for: /web
            assert http.get("/web/").status_code == 200  # the client keeps the cookie
            assert http.get("/web").status_code == 307
            assert http.get("/web/info").json()["metadata"]["name"]
            assert http.get("/schema").status_code == 401  # the cookie opens the page, nothing else
            cookie_header = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        ws_url = url.replace("http", "ws") + "/web/ws"
        for headers, status in (({}, 401), ({"Cookie": cookie_header, "Origin": "http://evil.example"}, 403)):
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                websockets.sync.client.connect(ws_url, additional_headers=headers, open_timeout=30)
            assert refused.value.response.status_code == status
        with websockets.sync.client.connect(ws_url, additional_headers={"Cookie": cookie_header}, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "reset", "data": {}}))
            assert json.loads(ws.recv(timeout=60))["type"] == "observation"

        with web_page(browser, f"{url}/web?token={TOKEN}") as page:
            assert page.url == f"{url}/web/"  # the token left the address bar
            (cookie,) = page.context.cookies()
            assert cookie["path"] == "/web" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            press(page, "Reset")
            expect(page.locator("#status")).to_have_text("connected")
            expect(page.locator("#error")).to_be_hidden()


# --- behind a reverse proxy under a path prefix ----------------------------------------

PREFIX = "/envs/echo"


class PrefixProxy:
    """A reverse proxy on loopback that serves ``upstream`` under ``prefix`` the way
    jupyter-server-proxy, an ingress or nginx's ``location /prefix/ { proxy_pass
    http://upstream/; }`` do: it strips the prefix, names it in ``X-Forwarded-Prefix``,
    sends the upstream's own ``Host`` and the browser's in ``X-Forwarded-Host``, and
    passes HTTP and WebSocket upgrades alike. Responses go back unchanged. A request
    outside the prefix (a URL of the page that forgot it) gets 404 and is kept in
    ``strays``."""

    def __init__(self, upstream: str, prefix: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.prefix = prefix
        self.strays: list[str] = []
        self.forwarded: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> "PrefixProxy":
        self.thread.start()
        start = asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(timeout=60)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, version = request_line.split(" ")
        headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
        if not target.startswith(self.prefix + "/"):
            self.strays.append(target)
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        self.forwarded.append(target)
        upgrade = headers.get("upgrade", "").lower() == "websocket"
        passed = {k: v for k, v in headers.items() if k not in ("host", "connection", "keep-alive")}
        passed |= {
            "host": self.upstream,
            "x-forwarded-host": headers.get("host", ""),
            "x-forwarded-prefix": self.prefix,
            "x-forwarded-proto": "http",
            "connection": "Upgrade" if upgrade else "close",  # one request per connection: no response framing to follow
        }
        host, port = self.upstream.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        request = f"{method} {target[len(self.prefix):]} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in passed.items())
        up_writer.write(request.encode("latin-1") + b"\r\n")
        to_upstream = asyncio.ensure_future(self.pipe(reader, up_writer, close=False))
        try:
            await self.pipe(up_reader, writer, close=True)  # the server's answer; it closes when done
        finally:
            to_upstream.cancel()
            up_writer.close()

    @staticmethod
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, close: bool) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
            if close:
                sink.close()
            elif sink.can_write_eof():
                sink.write_eof()
        except ConnectionError:
            sink.close()


@contextmanager
def uvicorn_with_root_path(root_path: str, env: dict[str, str]) -> Iterator[str]:
    """The echo app run as OpenEnv runs its servers, ``uvicorn MODULE:app``, told the
    prefix with ``--root-path``; yields its URL."""
    log = tempfile.NamedTemporaryFile(mode="w+", suffix=".log")
    app = "gym_openenv.servers.echo.server.app:app"
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0", "--root-path", root_path, "--no-access-log"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
    )
    try:
        for _ in range(1500):
            assert process.poll() is None, Path(log.name).read_text()
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", Path(log.name).read_text())
            if found:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"uvicorn never said where it listens\n{Path(log.name).read_text()}")
        yield found.group(1)
    finally:
        _stop_group(process)
        log.close()


@pytest.mark.parametrize("told", [False, True], ids=["prefix-stripped-untold", "uvicorn-root-path"])
def test_the_page_plays_behind_a_proxy_under_a_path_prefix(browser, artifacts, told):
    """Untold: our launcher behind a proxy that strips the prefix and only names it in a
    header (as jupyter-server-proxy does). Told: ``uvicorn --root-path`` behind it."""
    env = {"OPENENV_TOKEN": TOKEN, "OPENENV_WEB": "1"}
    server = uvicorn_with_root_path(PREFIX, env) if told else web_server("echo", env=env, web_flag=False)
    with server as url, PrefixProxy(url, PREFIX) as proxy:
        base = proxy.url + PREFIX
        (message_field,) = space_fields(schema_of_with_token(url), "Text")
        # The address a user is given, through the proxy: the token leaves it for a cookie.
        with web_page(browser, f"{base}/web?token={TOKEN}") as page:
            assert page.url == f"{base}/web/"
            (cookie,) = page.context.cookies()
            # Sent to the page, its info and its WebSocket under the prefix, nowhere else.
            assert cookie["path"] == f"{PREFIX}/web" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            expect(page.locator("#env-name")).to_have_text("echo")  # /web/info came through
            press(page, "Reset")
            expect(page.locator("#status")).to_have_text("connected")  # the WebSocket passed the origin check
            page.fill(f'[name="{message_field}"]', "hello through the proxy")
            press(page, "Step")
            expect(page.locator("#error")).to_be_hidden()
            expect(page.locator("#observation")).to_contain_text("hello through the proxy")
            expect(page.locator("#step-count")).to_have_text("1")
            page.screenshot(path=artifacts / f"behind-a-proxy-{'told' if told else 'untold'}.png", full_page=True)
        assert proxy.strays == []  # no URL of the page left the prefix
        assert f"{PREFIX}/web/ws" in proxy.forwarded and f"{PREFIX}/web/static/app.js" in proxy.forwarded
        # Another site's page still cannot open the WebSocket through the proxy.
        ws_url = base.replace("http", "ws") + "/web/ws"
        cookie_header = f"{cookie['name']}={cookie['value']}"
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            websockets.sync.client.connect(ws_url, additional_headers={"Cookie": cookie_header, "Origin": "http://evil.example"}, open_timeout=60)
        assert refused.value.response.status_code == 403
        with websockets.sync.client.connect(ws_url, additional_headers={"Cookie": cookie_header, "Origin": proxy.url}, open_timeout=60) as ws:
            ws.send(json.dumps({"type": "reset", "data": {}}))
            assert json.loads(ws.recv(timeout=60))["type"] == "observation"


def schema_of_with_token(url: str) -> dict:
    return httpx.get(f"{url}/schema", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).json()["action"]


# --- each environment in the browser ---------------------------------------------------


def test_atari_pong_is_played_frame_by_frame(browser, artifacts):
    with served_by_the_cli("atari", "--web") as url:
        schema = schema_of(url)
        screen = image_field(schema)
        (action_field,) = space_fields(schema["action"], "Discrete")
        with web_page(browser, f"{url}/web") as page:
            expect(page.locator("#env-name")).to_have_text("atari")
            expect(page.locator("#spaces")).to_contain_text("Discrete(6)")
            expect(page.locator("#spaces")).to_contain_text("Box(0, 255, (210, 160, 3), uint8)")
            page.fill("#seed", "0")
            press(page, "Reset")
            reset_frame = frame(page, screen)

            reference = gym.make("ALE/Pong-v5")
            expected, _ = reference.reset(seed=0)
            assert np.array_equal(reset_frame, expected)  # the <img> holds the exact frame

            page.select_option(f'select[name="{action_field}"]', label="2: RIGHT")
            page.fill("#repeat", "30")
            press(page, "Step")
            for _ in range(30):
                expected, *_ = reference.step(2)
            reference.close()
            stepped = frame(page, screen)
            assert not np.array_equal(stepped, reset_frame)
            assert np.array_equal(stepped, expected)
            expect(page.locator("#step-count")).to_have_text("30")
            expect(page.locator("#steps li")).to_have_count(30)
            assert page.locator(f'#images img[data-field="{screen}"]').evaluate("img => img.naturalWidth") == 160

            # From the keyboard: a digit picks that action and steps.
            page.fill("#repeat", "1")
            page.locator("body").click(position={"x": 5, "y": 5})  # focus off the form
            answered(page, lambda: page.keyboard.press("3"))
            expect(page.locator("#steps li").first).to_contain_text(json.dumps({action_field: 3}, separators=(",", ":")))
            press(page, "Reset")
            rows = page.locator("#episodes tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(1).locator("td").nth(1)).to_have_text("31")  # the first episode's steps
            press(page, "Step")
            page.screenshot(path=artifacts / "atari.png", full_page=True)


def test_openspiel_illegal_action_shows_the_servers_error(browser, artifacts):
    with web_server("openspiel", {"game": "tic_tac_toe", "opponent": "first_legal"}) as url:
        (action_field,) = space_fields(schema_of(url)["action"], "Discrete")
        with web_page(browser, f"{url}/web") as page:
            press(page, "Reset")
            page.select_option(f'select[name="{action_field}"]', "4")
            press(page, "Step")
            expect(page.locator("#error")).to_be_hidden()
            # Only the action is sent (optional settings left empty stay out) ...
            expect(page.locator("#steps li").first).to_contain_text(json.dumps({action_field: 4}, separators=(",", ":")))
            # ... and the dropdown marks what the game calls illegal, without refusing it.
            expect(page.locator(f'select[name="{action_field}"] option[value="4"]')).to_have_text("4 (illegal now)")
            press(page, "Step")  # the centre is taken now
            error = page.locator("#error")
            expect(error).to_be_visible()
            expect(error).to_contain_text("illegal action 4")
            expect(error).to_contain_text("legal actions")
            page.screenshot(path=artifacts / "openspiel.png", full_page=True)


def test_coding_output_appears_and_validation_errors_are_shown(browser, artifacts):
    with web_server("coding") as url:
        action = schema_of(url)["action"]
        (code_field,) = space_fields(action, "Text")
        (number_field,) = space_fields(action, "Box")  # the optional time limit
        with web_page(browser, f"{url}/web") as page:
            press(page, "Reset")
            page.fill(f'[name="{code_field}"]', "for i in range(3):\n    print('hello from the page', i * 7)")
            press(page, "Step")
            expect(page.locator("#observation")).to_contain_text("hello from the page 14")
            expect(page.locator("#error")).to_be_hidden()
            page.screenshot(path=artifacts / "coding.png", full_page=True)

            # Out of the field's space: the server refuses it, the page shows its words.
            page.fill(f'[name="{number_field}"]', "0.001")
            press(page, "Step")
            expect(page.locator("#error")).to_contain_text("VALIDATION_ERROR")
            expect(page.locator("#error")).to_contain_text(number_field)


@pytest.mark.timeout(900)
def test_browsergym_click_changes_the_screenshot(browser, artifacts):
    with web_server("browsergym", {"task": "miniwob.click-test"}) as url:
        schema = schema_of(url)
        screenshot = image_field(schema)
        (action_field,) = space_fields(schema["action"], "Text")
        with web_page(browser, f"{url}/web") as page:
            page.fill("#seed", "1")
            press(page, "Reset")
            before = frame(page, screenshot)
            text = page.locator("#observation").inner_text()
            bid = re.search(r"\[(\w+)\] button", text).group(1)
            page.fill(f'[name="{action_field}"]', f'click("{bid}")')
            press(page, "Step")
            expect(page.locator("#reward")).to_have_text("1")
            expect(page.locator("#terminated")).to_have_text("true")
            assert not np.array_equal(frame(page, screenshot), before)
            page.screenshot(path=artifacts / "browsergym.png", full_page=True)


def test_calculator_tools_are_picked_called_and_their_errors_shown(browser, artifacts):
    with web_server("calculator") as url, web_page(browser, f"{url}/web") as page:
        page.fill("#seed", "0")
        press(page, "Reset")
        tools = page.locator("#action-fields .tools button.chip")
        # The tools load with the episode (MCP tools/list inside the session, not a step) ...
        expect(tools).to_have_text(["add", "divide", "multiply", "submit", "subtract", "list tools"])
        expect(page.locator("#step-count")).to_have_text("0")
        # ... and picking one fills the arguments with its parameters.
        tools.filter(has_text="multiply").click()
        assert json.loads(page.locator('[data-field="arguments"]').input_value()) == {"a": None, "b": None}
        page.fill('[data-field="arguments"]', '{"a": 6, "b": 7}')
        press(page, "Step")
        expect(page.locator('#observation [data-field="result"]')).to_contain_text("42")
        expect(page.locator("#error")).to_be_hidden()
        # A tool that fails: the environment's error, in the banner.
        tools.filter(has_text="divide").click()
        page.fill('[data-field="arguments"]', '{"a": 1, "b": 0}')
        press(page, "Step")
        expect(page.locator("#error")).to_contain_text("division by zero")
        # MCP's ListToolsAction as a step of its own.
        answered(page, tools.filter(has_text="list tools").click)
        expect(page.locator("#steps li").first).to_contain_text('{"type":"list_tools"}')
        expect(page.locator("#step-count")).to_have_text("3")
        page.screenshot(path=artifacts / "calculator.png", full_page=True)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("echo", None), ("repl", None), ("chat", None), ("finrl", None), ("gym", None)],
    ids=["echo", "repl", "chat", "finrl", "gym"],
)
def test_every_other_environment_gets_a_working_page(browser, artifacts, name, kwargs):
    """The form comes from each schema as it is: Reset and Step with what it holds."""
    with web_server(name, kwargs) as url, web_page(browser, f"{url}/web") as page:
        expect(page.locator("#action-fields [data-field]").first).to_be_attached()
        press(page, "Reset")
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#observation .field").first).to_be_attached()
        press(page, "Step")
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#step-count")).to_have_text("1")
        page.screenshot(path=artifacts / f"{name}.png", full_page=True)


def test_a_short_box_action_gets_a_number_box_per_entry(browser):
    with web_server("gym", {"env_id": "Pendulum-v1"}) as url, web_page(browser, f"{url}/web") as page:
        (torque,) = space_fields(schema_of(url)["action"], "Box")
        expect(page.locator(f'[name="{torque}"]')).to_have_attribute("type", "number")
        expect(page.locator(f'[name="{torque}"]')).to_have_attribute("max", "2")
        press(page, "Reset")
        page.fill(f'[name="{torque}"]', "1.5")
        press(page, "Step")
        expect(page.locator("#steps li").first).to_contain_text(json.dumps({torque: [1.5]}, separators=(",", ":")))
        page.fill(f'[name="{torque}"]', "5")  # past the bound: the server says so
        press(page, "Step")
        expect(page.locator("#error")).to_contain_text("VALIDATION_ERROR")


# --- a session like any other: the cap and the idle reaper apply ---------------------


def echo_server_with(*flags: str) -> LocalProcessProvider:
    return LocalProcessProvider(find("echo").environment, server_args=["--web", *flags])


def test_the_page_waits_its_turn_under_the_session_cap(browser):
    with echo_server_with("--max-sessions", "1") as provider, web_page(browser, f"{provider.base_url}/web") as page:
        with websockets.sync.client.connect(provider.base_url.replace("http", "ws") + "/ws", open_timeout=30) as other:
            other.send(json.dumps({"type": "reset", "data": {}}))
            assert json.loads(other.recv(timeout=60))["type"] == "observation"
            press(page, "Reset")  # the other client holds the only slot
            expect(page.locator("#error")).to_contain_text("CAPACITY_REACHED")
        # The slot is free once the server has seen the other client go.
        for _ in range(60):
            press(page, "Reset")
            if page.locator("#error").is_hidden():
                break
            page.wait_for_timeout(500)
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#status")).to_have_text("connected")


def test_the_idle_reaper_ends_the_pages_session_and_reset_opens_a_new_one(browser):
    with echo_server_with("--idle-timeout", "2") as provider, web_page(browser, f"{provider.base_url}/web") as page:
        press(page, "Reset")
        expect(page.locator("#error")).to_be_hidden()
        page.wait_for_timeout(5000)  # idle past the timeout; the reaper looks every 0.5 s
        press(page, "Step")
        expect(page.locator("#error")).to_contain_text("SESSION_ERROR")
        press(page, "Reset")
        expect(page.locator("#error")).to_be_hidden()
        press(page, "Step")
        expect(page.locator("#error")).to_be_hidden()


def test_numbers_and_json_are_shown_as_a_person_reads_them(browser):
    with echo_server_with() as provider, web_page(browser, f"{provider.base_url}/web") as page:
        shown = page.evaluate(
            """async () => {
                const { formatNumber, pretty } = await import("./static/dom.js");
                return {
                    numbers: [3, -0.5, 0.1 + 0.2, 100000.4, 1e-9, 2.5e12].map(formatNumber),
                    board: pretty({ board: [[1, 0], [0, 1]], empty: {} }),
                };
            }"""
        )
    assert shown["numbers"] == ["3", "-0.5", "0.3", "100000", "1e-9", "2500000000000"]
    assert shown["board"] == '{\n  "board": [\n    [1, 0],\n    [0, 1]\n  ],\n  "empty": {}\n}'


def _stop_group(process: subprocess.Popen) -> None:
    """End a server started in its own process group: politely, then for good after 30 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
