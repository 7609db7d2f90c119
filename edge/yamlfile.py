"""YAML files checked by pydantic, with every problem reported at its `file:line:col`.

Used for the site file (edge.config) and for firmware profiles (hil_tests.profiles): people edit
both by hand, so an error must say where it is, all errors are reported at once, and duplicate
keys are errors instead of YAML's silent "last one wins".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

Loc = tuple[str | int, ...]
Position = tuple[int, int]


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"


class ConfigError(Exception):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def dotted(loc: Loc) -> str:
    """("doors", 0, "lock_mode") -> "doors[0].lock_mode"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _mark(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


@dataclass
class YamlDocument:
    """A parsed mapping plus where each value and each key starts in the file (1-based)."""

    filename: str
    data: dict[str, Any]
    values: dict[Loc, Position] = field(default_factory=dict)
    keys: dict[Loc, Position] = field(default_factory=dict)

    def _record(self, node: yaml.Node, loc: Loc) -> None:
        self.values[loc] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                self.keys[(*loc, key_node.value)] = _mark(key_node)
                self._record(value_node, (*loc, key_node.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._record(item, (*loc, index))

    def value_at(self, loc: Loc) -> Position:
        """Where a value is; for a missing key, where its closest parent is."""
        while loc not in self.values and loc:
            loc = loc[:-1]
        return self.values.get(loc, (1, 1))

    def issue(self, loc: Loc, message: str, *, at_key: bool = False) -> ConfigIssue:
        line, col = self.keys.get(loc, (1, 1)) if at_key else self.value_at(loc)
        return ConfigIssue(self.filename, line, col, dotted(loc), message)

    def issues(
        self,
        exc: ValidationError,
        unknown_key: str,
        rewrite: Callable[[ErrorDetails, Loc, str], tuple[Loc, str]] | None = None,
    ) -> list[ConfigIssue]:
        """Every validation error, placed in the file. `rewrite` may adjust a location and message."""
        found = []
        for err in exc.errors():
            loc, message = tuple(err["loc"]), err["msg"]
            if rewrite is not None:
                loc, message = rewrite(err, loc, message)
            if err["type"] == "extra_forbidden":
                found.append(self.issue(loc, unknown_key, at_key=True))
            else:
                found.append(self.issue(loc, message))
        return found


def read_yaml(text: str, filename: str, what: str) -> YamlDocument:
    """Parse `text` as one YAML mapping; `what` names the document in errors ("the site file")."""
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError([ConfigIssue(filename, line, col, "(file)", f"YAML syntax: {problem}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(filename, 1, 1, "(file)", f"{what} must be a YAML mapping")])
    doc = YamlDocument(filename, data)
    if node is not None:
        doc._record(node, ())
    return doc
