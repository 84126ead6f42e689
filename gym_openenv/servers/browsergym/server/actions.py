"""BrowserGym's high-level action set: parsed safely, run with Playwright.

An action is text holding one or more function calls, one per line, in
BrowserGym's syntax: ``click("12")``, ``fill("5", "Alice")``,
``press("5", "Enter")``, ``select_option("7", "Peru")``, ``scroll(0, 200)``,
``noop()``. Elements are named by the ``bid`` shown in brackets in the
observation's ``text``.

The text is never evaluated: :func:`parse_actions` reads it with :mod:`ast`,
accepts only calls of the functions in :data:`ACTIONS` with literal
arguments, and checks every argument against the function's signature.

Example:
    >>> parse_actions('click("12")\\nfill("5", "Alice")')
    [ActionCall(name='click', arguments={'bid': '12'}), ActionCall(name='fill', arguments={'bid': '5', 'value': 'Alice'})]
    >>> parse_actions("__import__('os')")
    Traceback (most recent call last):
    ...
    gym_openenv.servers.browsergym.server.actions.ActionError: unknown action '__import__'; actions are: check, clear, click, ...
"""

from __future__ import annotations

import ast
import asyncio
import difflib
import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NewType

from playwright.async_api import Locator, Page

__all__ = ["ACTIONS", "ActionCall", "ActionContext", "ActionError", "execute", "parse_actions"]

#: An element id from the observation's ``text`` (ints are accepted and converted).
Bid = NewType("Bid", str)

MAX_CALLS_PER_ACTION = 10
MAX_NOOP_WAIT_MS = 10_000
MOUSE_BUTTONS = ("left", "middle", "right")
MODIFIER_KEYS = ("Alt", "Control", "ControlOrMeta", "Meta", "Shift")


class ActionError(ValueError):
    """The action is not valid: bad syntax, unknown function, wrong arguments,
    or an element id that is not on the page."""


@dataclass(frozen=True)
class ActionCall:
    """One parsed call: the action's name and its checked keyword arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ActionContext:
    """What an action runs against: the session's page and the per-call timeout."""

    page: Page
    timeout_ms: float


ACTIONS: dict[str, Callable[..., Awaitable[None]]] = {}


def _action(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    ACTIONS[fn.__name__] = fn
    return fn


# --- parsing ------------------------------------------------------------------


def parse_actions(text: str) -> list[ActionCall]:
    """Parse action text into checked calls, without evaluating anything.

    Raises:
        ActionError: naming what is wrong with the text.
    """
    try:
        tree = ast.parse(text.strip(), mode="exec")
    except SyntaxError as err:
        raise ActionError(f"action is not a function call like click(\"12\"): {err.msg}") from None
    if not tree.body:
        raise ActionError('empty action; use noop() to wait, or e.g. click("12")')
    if len(tree.body) > MAX_CALLS_PER_ACTION:
        raise ActionError(f"at most {MAX_CALLS_PER_ACTION} calls per action, got {len(tree.body)}")
    return [_parse_call(statement) for statement in tree.body]


def _parse_call(statement: ast.stmt) -> ActionCall:
    call = statement.value if isinstance(statement, ast.Expr) else None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ActionError(f"expected a call like click(\"12\"), got {ast.unparse(statement)!r}")
    name = call.func.id
    if name not in ACTIONS:
        close = difflib.get_close_matches(name, ACTIONS, n=1)
        hint = f"did you mean {close[0]}?" if close else "actions are: " + ", ".join(sorted(ACTIONS)[:3]) + ", ..."
        raise ActionError(f"unknown action {name!r}; {hint}")
    if any(isinstance(arg, ast.Starred) for arg in call.args) or any(kw.arg is None for kw in call.keywords):
        raise ActionError(f"{name}: * and ** arguments are not allowed")
    args = [_literal(name, node) for node in call.args]
    kwargs = {kw.arg: _literal(name, kw.value) for kw in call.keywords}
    signature = _signature(name)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as err:
        raise ActionError(f"{name}{signature}: {err}") from None
    hints = typing.get_type_hints(ACTIONS[name])
    return ActionCall(name, {param: _coerce(name, param, value, hints[param]) for param, value in bound.arguments.items()})


def _literal(name: str, node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ActionError(f"{name}: arguments must be literals (strings, numbers, lists), got {ast.unparse(node)!r}") from None


def _signature(name: str) -> inspect.Signature:
    # The first parameter (the ActionContext) is supplied by the server, not the agent.
    signature = inspect.signature(ACTIONS[name])
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def _coerce(name: str, param: str, value: Any, expected: Any) -> Any:
    def fail(kind: str) -> ActionError:
        return ActionError(f"{name}: {param} must be {kind}, got {value!r}")

    if expected is Bid:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.isdigit():
            raise fail("an element id from the observation's text, e.g. \"12\"")
        return value
    if expected is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if expected == list[str]:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise fail("a list of strings")
        return list(value)
    if expected == str | list[str]:
        if isinstance(value, str):
            return value
        return _coerce(name, param, value, list[str])
    raise TypeError(f"action {name} has a parameter type the parser does not know: {expected!r}")


# --- running ------------------------------------------------------------------


async def execute(context: ActionContext, call: ActionCall) -> None:
    """Run one parsed call on the session's page."""
    await ACTIONS[call.name](context, **call.arguments)


async def _element(context: ActionContext, bid: Bid) -> Locator:
    locator = context.page.locator(f'[bid="{bid}"]')
    if await locator.count() == 0:
        raise ActionError(f"no element with bid {bid!r} on the page")
    return locator.first


def _check_button(button: str) -> None:
    if button not in MOUSE_BUTTONS:
        raise ActionError(f"button must be one of {MOUSE_BUTTONS}, got {button!r}")


def _check_modifiers(modifiers: list[str]) -> None:
    unknown = [m for m in modifiers if m not in MODIFIER_KEYS]
    if unknown:
        raise ActionError(f"modifiers must be among {MODIFIER_KEYS}, got {unknown}")


@_action
async def noop(context: ActionContext, wait_ms: float = 1000) -> None:
    """Do nothing for ``wait_ms`` milliseconds."""
    if not 0 <= wait_ms <= MAX_NOOP_WAIT_MS:
        raise ActionError(f"noop: wait_ms must be in [0, {MAX_NOOP_WAIT_MS}], got {wait_ms}")
    await asyncio.sleep(wait_ms / 1000)


@_action
async def scroll(context: ActionContext, delta_x: float, delta_y: float) -> None:
    """Scroll by a mouse-wheel delta in pixels."""
    await context.page.mouse.wheel(delta_x, delta_y)


@_action
async def fill(context: ActionContext, bid: Bid, value: str) -> None:
    """Replace the text of an input or textarea."""
    await (await _element(context, bid)).fill(value, timeout=context.timeout_ms)


@_action
async def clear(context: ActionContext, bid: Bid) -> None:
    """Empty an input or textarea."""
    await (await _element(context, bid)).clear(timeout=context.timeout_ms)


@_action
async def select_option(context: ActionContext, bid: Bid, options: str | list[str]) -> None:
    """Select option(s) of a <select> by label or value."""
    await (await _element(context, bid)).select_option(options, timeout=context.timeout_ms)


@_action
async def click(context: ActionContext, bid: Bid, button: str = "left", modifiers: list[str] = []) -> None:  # noqa: B006 - never mutated
    """Click an element."""
    _check_button(button)
    _check_modifiers(modifiers)
    element = await _element(context, bid)
    await element.click(button=button, modifiers=modifiers, timeout=context.timeout_ms)


@_action
async def dblclick(context: ActionContext, bid: Bid, button: str = "left", modifiers: list[str] = []) -> None:  # noqa: B006
    """Double-click an element."""
    _check_button(button)
    _check_modifiers(modifiers)
    element = await _element(context, bid)
    await element.dblclick(button=button, modifiers=modifiers, timeout=context.timeout_ms)


@_action
async def hover(context: ActionContext, bid: Bid) -> None:
    """Move the mouse over an element."""
    await (await _element(context, bid)).hover(timeout=context.timeout_ms)


@_action
async def press(context: ActionContext, bid: Bid, key_comb: str) -> None:
    """Focus an element and press a key combination, e.g. "Enter" or "Control+a"."""
    await (await _element(context, bid)).press(key_comb, timeout=context.timeout_ms)


@_action
async def focus(context: ActionContext, bid: Bid) -> None:
    """Focus an element."""
    await (await _element(context, bid)).focus(timeout=context.timeout_ms)


@_action
async def check(context: ActionContext, bid: Bid) -> None:
    """Check a checkbox or radio button."""
    await (await _element(context, bid)).check(timeout=context.timeout_ms)


@_action
async def uncheck(context: ActionContext, bid: Bid) -> None:
    """Uncheck a checkbox."""
    await (await _element(context, bid)).uncheck(timeout=context.timeout_ms)


@_action
async def drag_and_drop(context: ActionContext, from_bid: Bid, to_bid: Bid) -> None:
    """Drag one element onto another."""
    source, target = await _element(context, from_bid), await _element(context, to_bid)
    await source.drag_to(target, timeout=context.timeout_ms)


@_action
async def mouse_move(context: ActionContext, x: float, y: float) -> None:
    """Move the mouse to viewport coordinates (CSS pixels)."""
    await context.page.mouse.move(x, y)


@_action
async def mouse_down(context: ActionContext, x: float, y: float, button: str = "left") -> None:
    """Move the mouse to (x, y) and press a button."""
    _check_button(button)
    await context.page.mouse.move(x, y)
    await context.page.mouse.down(button=button)


@_action
async def mouse_up(context: ActionContext, x: float, y: float, button: str = "left") -> None:
    """Move the mouse to (x, y) and release a button."""
    _check_button(button)
    await context.page.mouse.move(x, y)
    await context.page.mouse.up(button=button)


@_action
async def mouse_click(context: ActionContext, x: float, y: float, button: str = "left") -> None:
    """Click at viewport coordinates."""
    _check_button(button)
    await context.page.mouse.click(x, y, button=button)


@_action
async def mouse_dblclick(context: ActionContext, x: float, y: float, button: str = "left") -> None:
    """Double-click at viewport coordinates."""
    _check_button(button)
    await context.page.mouse.dblclick(x, y, button=button)


@_action
async def mouse_drag_and_drop(context: ActionContext, from_x: float, from_y: float, to_x: float, to_y: float) -> None:
    """Press at one point, move to another, release."""
    mouse = context.page.mouse
    await mouse.move(from_x, from_y)
    await mouse.down()
    await mouse.move(to_x, to_y)
    await mouse.up()


@_action
async def keyboard_press(context: ActionContext, key: str) -> None:
    """Press a key combination on the focused element, e.g. "Enter"."""
    await context.page.keyboard.press(key)


@_action
async def keyboard_down(context: ActionContext, key: str) -> None:
    """Hold a key down."""
    await context.page.keyboard.down(key)


@_action
async def keyboard_up(context: ActionContext, key: str) -> None:
    """Release a held key."""
    await context.page.keyboard.up(key)


@_action
async def keyboard_type(context: ActionContext, text: str) -> None:
    """Type text into the focused element, key by key."""
    await context.page.keyboard.type(text)


@_action
async def keyboard_insert_text(context: ActionContext, text: str) -> None:
    """Insert text into the focused element at once (no key events)."""
    await context.page.keyboard.insert_text(text)
