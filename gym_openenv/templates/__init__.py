"""The scaffold ``gym-openenv init NAME`` writes: a working server folder.

``server/`` holds the folder's files in OpenEnv's layout and ``tests/`` its
test, as ``*.tmpl`` files with ``{{placeholders}}``. :func:`scaffold` renders
them under a root (a repository: ``registry.yaml`` beside ``gym_openenv/servers/``) and
appends the environment to ``registry.yaml``, so ``gym.make("openenv/NAME-v0")``
works at once.

Example:
    >>> written = scaffold(Path("."), "maze")            # doctest: +SKIP
    >>> [str(p) for p in written][:2]                    # doctest: +SKIP
    ['gym_openenv/servers/maze/__init__.py', 'gym_openenv/servers/maze/client.py']
"""

import json
import re
from pathlib import Path

import yaml

from gym_openenv.registry import RegistryEntry, load_registry

__all__ = ["NAME_PATTERN", "class_prefix", "registry_entry_text", "scaffold", "validate_name"]

TEMPLATES = Path(__file__).resolve().parent
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def validate_name(name: str) -> str:
    """The environment name, or a ValueError saying what a valid one looks like."""
    if not NAME_PATTERN.match(name):
        suggestion = re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_")
        hint = f" (e.g. {suggestion!r})" if suggestion and NAME_PATTERN.match(suggestion) else ""
        raise ValueError(f"name {name!r} must be lowercase letters, digits and underscores, starting with a letter{hint}")
    if name.endswith("_env"):
        # Lookups accept "coding", "coding-env" and "coding_env" as one name.
        raise ValueError(f"name {name!r} ends in '_env', which name lookups drop; call it {name.removesuffix('_env')!r}")
    return name


def class_prefix(name: str) -> str:
    """``"grid_world"`` -> ``"GridWorld"``: the prefix of the scaffold's class names."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def _render(text: str, values: dict[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return _PLACEHOLDER.sub(substitute, text)


def registry_entry_text(name: str, description: str) -> str:
    """The registry.yaml list item for a scaffolded environment (indented like the file's)."""
    return (
        f"  - name: {name}\n"
        f"    description: {json.dumps(description)}\n"
        f"    server: gym_openenv/servers/{name}\n"
        f"    environment: servers.{name}.server.environment:{class_prefix(name)}Environment\n"
        f"    kwargs: {{}}\n"
        f"    max_episode_steps: null\n"
        f"    providers: [local, docker]\n"
    )


def _append_registry_entry(registry_path: Path, name: str, description: str) -> None:
    """Append the entry as text, so the file's comments and layout stay as they are."""
    if registry_path.exists():
        original = registry_path.read_text()
        data = yaml.safe_load(original) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{registry_path}: expected a mapping with an 'environments' list")
        if not data.get("environments"):
            # "environments: []" or no key at all: start the block list.
            original = re.sub(r"(?m)^environments:.*\n?", "", original)
            original = original.rstrip("\n") + ("\n" if original.strip() else "") + "environments:\n"
    else:
        original = '# Environments gym_openenv registers as gym.make("openenv/<name>-v0").\nenvironments:\n'
    if not original.endswith("\n"):
        original += "\n"
    updated = original + registry_entry_text(name, description)
    registry_path.write_text(updated)
    try:
        # The same parser gym_openenv uses; the cache is bypassed because the file just changed.
        load_registry.__wrapped__(registry_path)
    except ValueError:
        registry_path.write_text(original)
        raise


def scaffold(root: Path, name: str, description: str | None = None) -> list[Path]:
    """Write ``gym_openenv/servers/<name>/`` and ``tests/servers/test_<name>.py`` under ``root``
    and register the environment in ``root/registry.yaml``.

    Returns:
        The files written, relative to ``root``.

    Raises:
        ValueError: the name is invalid or taken, or a file would be overwritten.
    """
    validate_name(name)
    root = Path(root)
    description = description or f"The {name} environment (a walker looks for a goal on a line; replace it with yours)."
    if "\n" in description:
        raise ValueError("description must be one line")
    values = {
        "name": name,
        "Class": class_prefix(name),
        "description": description,
        "description_py": json.dumps(description),  # a JSON string is a Python string literal too
        "description_yaml": json.dumps(description),
    }
    targets = {TEMPLATES / "tests" / "test_server.py.tmpl": Path("tests") / "servers" / f"test_{name}.py"}
    for template in sorted((TEMPLATES / "server").rglob("*.tmpl")):
        relative = template.relative_to(TEMPLATES / "server").with_suffix("")
        targets[template] = Path("servers") / name / relative
    taken = [str(p) for p in targets.values() if (root / p).exists()]
    if (root / "servers" / name).exists():
        taken.insert(0, f"gym_openenv/servers/{name}/")
    if taken:
        raise ValueError(f"{root}: would overwrite {', '.join(taken)}; pick another name or remove them")
    # Check the registry before writing anything, so a taken name leaves no files behind.
    registry_path = root / "registry.yaml"
    if registry_path.exists() and name in {e.name for e in load_registry.__wrapped__(registry_path)}:
        raise ValueError(f"{registry_path} already has an environment named {name!r}")
    RegistryEntry(name=name, environment=f"servers.{name}.server.environment:{values['Class']}Environment", server=f"gym_openenv/servers/{name}")

    for template, target in targets.items():
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(template.read_text(), values))
    for package in (root / "servers", root / "servers" / name, root / "servers" / name / "server"):
        (package / "__init__.py").touch()
    _append_registry_entry(registry_path, name, description)
    return sorted(targets.values())
