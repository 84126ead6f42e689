"""One headless Chromium per server process, shared by every session.

Playwright objects belong to the event loop (or, for the sync API, the
thread) that created them, while the server calls environment methods from
worker threads. So the browser lives on a dedicated thread running an
asyncio loop, and sessions hand it coroutines through :meth:`SharedBrowser.run`,
which waits with a deadline: a hung page costs a session a timeout, never a
hang. Each session owns a ``BrowserContext`` (its own cookies, storage and
page), so one Chromium process holds many sessions.

The browser is launched lazily on first use and relaunched when it has died
(:attr:`SharedBrowser.launches` counts launches, so sessions can tell that
their context went with the old process).

Example:
    >>> browser = shared_browser()
    >>> async def title():
    ...     context = await browser.new_context(viewport={"width": 160, "height": 210})
    ...     page = await context.new_page()
    ...     await page.set_content("<title>hi</title>")
    ...     text = await page.title()
    ...     await context.close()
    ...     return text
    >>> browser.run(title(), timeout=30)
    'hi'
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

__all__ = ["CHROMIUM_ARGS", "BrowserFailure", "SharedBrowser", "deadline", "shared_browser"]

T = TypeVar("T")

#: Chromium flags: no sandbox (containers), no GPU, and no background traffic
#: (updates, sync, QUIC) since servers run without internet.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)

#: Debian's chromium; Playwright's own browser download is the fallback when absent.
DEFAULT_CHROMIUM = "/usr/bin/chromium"

_LAUNCH_TIMEOUT_MS = 30_000
#: Pages opened at once. Opening one costs a renderer start and a page load;
#: dozens at once on a few cores all crawl, so later ones wait their turn.
MAX_OPENING = 4
# Extra time the calling thread waits beyond the coroutine's own deadline
# before deciding the browser loop itself is stuck.
_LOOP_GRACE_S = 5.0


class BrowserFailure(RuntimeError):
    """The browser or a page crashed, closed or stopped answering in time."""


def chromium_executable() -> str | None:
    """``$BROWSERGYM_CHROMIUM``, else Debian's chromium if installed, else None
    (Playwright's bundled browser)."""
    path = os.environ.get("BROWSERGYM_CHROMIUM") or DEFAULT_CHROMIUM
    return path if os.path.exists(path) else None


class SharedBrowser:
    """A Chromium process driven from one asyncio loop on its own thread."""

    def __init__(self, executable_path: str | None = None, args: tuple[str, ...] = CHROMIUM_ARGS):
        self.executable_path = executable_path
        self.args = args
        self.launches = 0
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        # asyncio primitives are made on the browser loop, at first use.
        self._launch_lock: asyncio.Lock | None = None
        self._opening: asyncio.Semaphore | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="browsergym-chromium", daemon=True)
        self._thread.start()

    # --- calls from any thread ---------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the browser loop and return its result.

        Raises:
            BrowserFailure: the coroutine took longer than ``timeout`` seconds
                or raised a Playwright error (crashed page, closed browser).
        """
        future = asyncio.run_coroutine_threadsafe(self._guarded(coro, timeout), self._loop)
        try:
            return future.result(timeout + _LOOP_GRACE_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BrowserFailure(f"browser loop did not answer within {timeout + _LOOP_GRACE_S:.0f} s") from None

    def close(self) -> None:
        """Close the browser and Playwright, then stop the loop thread."""
        if not self._thread.is_alive():
            return
        try:
            self.run(self._shutdown(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    # --- coroutines (browser loop only) ------------------------------------

    @contextlib.asynccontextmanager
    async def opening(self) -> AsyncIterator[None]:
        """Hold one of the :data:`MAX_OPENING` slots for opening a page."""
        if self._opening is None:
            self._opening = asyncio.Semaphore(MAX_OPENING)
        async with self._opening:
            yield

    async def new_context(self, **options: Any) -> BrowserContext:
        """A fresh context (one session's private browser state)."""
        browser = await self.browser()
        try:
            return await browser.new_context(**options)
        except PlaywrightError:
            # The browser died without a disconnect event (its Playwright driver
            # went with it): relaunch once.
            return await (await self.browser(dead=browser)).new_context(**options)

    async def browser(self, dead: Browser | None = None) -> Browser:
        """The running browser, launched or relaunched as needed; ``dead`` is
        one found not to answer, to be replaced unless another caller already has."""
        if self._launch_lock is None:
            self._launch_lock = asyncio.Lock()
        async with self._launch_lock:
            if self._browser is None or self._browser is dead or not self._browser.is_connected():
                await self._launch()
            assert self._browser is not None
            return self._browser

    async def _launch(self) -> None:
        if self._browser is not None:
            # Died or disconnected: release what Playwright still holds for it.
            await _close_quietly(self._browser)
            self._browser = None
        try:
            self._browser = await self._launch_browser()
        except PlaywrightError:
            # Playwright's driver process (the browser's parent) died too; its
            # connection is gone, so there is nothing to stop: start a new one.
            self._playwright = None
            self._browser = await self._launch_browser()
        self.launches += 1

    async def _launch_browser(self) -> Browser:
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        return await self._playwright.chromium.launch(
            executable_path=self.executable_path,
            headless=True,
            args=list(self.args),
            timeout=_LAUNCH_TIMEOUT_MS,
        )

    async def _shutdown(self) -> None:
        if self._browser is not None:
            await _close_quietly(self._browser)
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, T], timeout: float) -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise BrowserFailure(f"browser did not answer within {timeout:.0f} s") from None
        except PlaywrightError as err:
            raise BrowserFailure(first_line(err.message)) from err


async def _close_quietly(browser: Browser) -> None:
    # Closing a browser whose process is gone raises; there is nothing left to release then.
    try:
        await browser.close()
    except PlaywrightError:
        return


async def deadline(coro: Coroutine[Any, Any, T], seconds: float, what: str) -> T:
    """Await ``coro``, raising :class:`BrowserFailure` naming ``what`` after ``seconds``."""
    try:
        return await asyncio.wait_for(coro, seconds)
    except asyncio.TimeoutError:
        raise BrowserFailure(f"{what} took longer than {seconds:.0f} s") from None


def first_line(message: str) -> str:
    """Playwright messages carry a multi-line call log; the first line says what failed."""
    return message.strip().splitlines()[0] if message.strip() else "unknown browser error"


_shared: SharedBrowser | None = None
_shared_lock = threading.Lock()


def shared_browser() -> SharedBrowser:
    """The process-wide browser, created on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SharedBrowser(executable_path=chromium_executable())
        return _shared
