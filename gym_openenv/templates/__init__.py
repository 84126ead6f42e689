"""The folder ``gym-openenv init NAME`` writes: a working environment in OpenEnv's layout.

``env/`` holds the folder's files as ``*.tmpl`` files with ``{{placeholders}}`` (in
file names too). :func:`scaffold` renders them into ``<parent>/<name>/``, a new folder
the user owns; nothing outside it is written, least of all this package.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as parent:
    ...     written = scaffold(Path(parent), "maze_env")
    >>> [str(p) for p in written][:3]
    ['maze_env/README.md', 'maze_env/__init__.py', 'maze_env/client.py']
"""

import json
import re
from pathlib import Path

from gym_openenv.registry import normalize_name

__all__ = ["NAME_PATTERN", "class_prefix", "scaffold", "validate_name"]

TEMPLATES = Path(__file__).resolve().parent / "env"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def validate_name(name: str) -> str:
    """The environment name (also its folder and package name), or a ValueError saying what a valid one looks like."""
    if not NAME_PATTERN.match(name):
        suggestion = re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_")
        hint = f" (e.g. {suggestion!r})" if suggestion and NAME_PATTERN.match(suggestion) else ""
        raise ValueError(f"name {name!r} must be lowercase letters, digits and underscores, starting with a letter{hint}")
    if not NAME_PATTERN.match(normalize_name(name)):
        raise ValueError(f"name {name!r} leaves no gym name once '_env' is dropped; add a word before it")
    return name


def class_prefix(name: str) -> str:
    """``"grid_world_env"`` -> ``"GridWorld"``: the prefix of the scaffold's class names."""
    return "".join(part.capitalize() for part in normalize_name(name).split("_") if part)


def _render(text: str, values: dict[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return _PLACEHOLDER.sub(substitute, text)


def scaffold(parent: Path, name: str, description: str | None = None) -> list[Path]:
    """Write the folder ``parent/name`` and return its files, relative to ``parent``.

    Raises:
        ValueError: the name is invalid, the description is not one line, or
            ``parent/name`` exists and is not empty (nothing is written then).
    """
    validate_name(name)
    description = description or f"The {name} environment (a walker looks for a goal on a line; replace it with yours)."
    if "\n" in description:
        raise ValueError("description must be one line")
    folder = Path(parent) / name
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder} exists and is not empty; pick another name or remove it")
    values = {
        "name": name,
        "gym_name": normalize_name(name),
        "Class": class_prefix(name),
        "description": description,
        # A JSON string is a Python string literal, a YAML scalar and a TOML basic string too.
        "description_py": json.dumps(description),
        "description_yaml": json.dumps(description),
        "description_toml": json.dumps(description),
    }
    written = []
    for template in sorted(TEMPLATES.rglob("*.tmpl")):
        relative = Path(_render(str(template.relative_to(TEMPLATES).with_suffix("")), values))
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(template.read_text(), values))
        written.append(Path(name) / relative)
    return written
