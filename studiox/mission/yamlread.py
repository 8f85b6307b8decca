"""Reading YAML safely, keeping the line and column of every node.

PyYAML's own loaders lose positions, keep the last of two duplicate keys without a word and
expand aliases without bound. We compose the node graph with the safe loader and build plain
JSON-like data ourselves, so each of those becomes a precise error instead.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

import yaml

from ..errors import MissionInvalid, Problem

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000  # nodes after alias expansion: far above any real mission, far below a bomb
MAX_DEPTH = 64
_PLAIN_TAGS = {"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
_DEEP = f"values are nested more than {MAX_DEPTH} levels deep (or an alias refers to itself)"

Path = tuple  # of str keys and int indexes


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 also reads yes/no/on/off as booleans (the "Norway problem"): a verdict
    choice ``No`` or a step id ``no`` would silently become ``false``.
    """


_RESOLVERS = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.yaml_implicit_resolvers = _RESOLVERS
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

_FastLoader: type | None = None
if getattr(yaml, "CSafeLoader", None) is not None:  # libyaml: the same nodes, several times faster

    class _CLoader(yaml.CSafeLoader):  # type: ignore[misc, name-defined]
        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers

    _FastLoader = _CLoader


def _compose(text: str, libyaml: bool = True):
    """Compose with libyaml when it can; any error is reported by the pure-Python parser,
    whose messages the error corpus is written against."""
    if _FastLoader is not None and libyaml:
        try:
            return yaml.compose(text, Loader=_FastLoader)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=_Loader)


def _too_deep(text: str, libyaml: bool = True) -> tuple[yaml.Mark, Path] | None:
    """Where the first value nested past MAX_DEPTH starts, and its path, if there is one.

    Composing recurses once per level (a thousand levels exhaust Python's stack, in libyaml's
    composer as in PyYAML's), but parsing does not: the parser's events are read first, and
    composing only starts on a file that is shallow enough."""
    loaders = [_FastLoader, _Loader] if _FastLoader is not None and libyaml else [_Loader]
    for loader in loaders:  # libyaml stops at 1,000 levels of brackets with an error of its own
        try:
            return _first_too_deep(yaml.parse(text, Loader=loader))
        except yaml.YAMLError:
            continue
    return None  # composing reports it, with the messages the corpus expects


def _first_too_deep(events) -> tuple[yaml.Mark, Path] | None:
    # per open collection: [is_mapping, expecting_a_key, current key, current index]
    open_: list[list] = []
    for event in events:
        if isinstance(event, yaml.NodeEvent):  # a scalar, an alias, or the start of a collection
            parent = open_[-1] if open_ else None
            if parent and parent[0] and parent[1] and isinstance(event, yaml.ScalarEvent):
                parent[2] = event.value  # a key; its value comes next
            if isinstance(event, yaml.CollectionStartEvent):
                if len(open_) > MAX_DEPTH:
                    return event.start_mark, tuple((f[2] if not f[1] else "?") if f[0] else f[3] for f in open_)
                open_.append([isinstance(event, yaml.MappingStartEvent), True, "", 0])
                continue
        elif isinstance(event, yaml.CollectionEndEvent):
            open_.pop()
        else:
            continue
        if open_:  # a key or a value is complete
            frame = open_[-1]
            if frame[0]:
                frame[1] = not frame[1]
            else:
                frame[3] += 1
    return None


@dataclass
class Located:
    """Plain data read from YAML, with where each value (and each key) stands in the file."""

    file: str
    data: object
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    text: str = ""
    problems: list[Problem] = field(default_factory=list)  # found while reading; checks go on after them

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The (line, column) of the value at ``path``, or of its key; else of its nearest parent."""
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), (1, 1))

    def where_inside(self, path: Path, offset: int) -> tuple[int, int]:
        """The (line, column) of character ``offset`` of the text at ``path``, when the file holds that
        text as written on one line (plain, or quoted without escapes); else where the value starts."""
        line, col = self.where(path)
        value = self.value_at(path)
        if not isinstance(value, str) or "\n" in value or path not in self.values:
            return line, col
        lines = self.text.split("\n")
        source = lines[line - 1] if 0 < line <= len(lines) else ""
        start = col - 1
        if source[start:start + 1] in ("'", '"'):
            start += 1
        if source[start:start + len(value)] != value:
            return line, col
        return line, start + 1 + min(max(offset, 0), len(value))

    def value_at(self, path: Path):
        """The value at ``path``, or None when there is none."""
        node = self.data
        for seg in path:
            if isinstance(node, dict) and seg in node:
                node = node[seg]
            elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
                node = node[seg]
            else:
                return None
        return node


def render_path(data, path) -> str:
    """A YAML path as people read it: ``steps[2] (id: budget).arguments.amount``."""
    if len(path) > 12:  # a runaway path (an alias that refers to itself): its start says enough
        return render_path(data, path[:8]) + "…"
    out = ""
    node = data
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
            node = node[seg] if isinstance(node, list) and seg < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str) and ("steps" in out):
                out += f" (id: {node['id']})"
        else:
            out += f".{seg}" if out else str(seg)
            node = node.get(seg) if isinstance(node, dict) else None
    return out


def _problem(file: str, line: int, col: int, message: str, path: str = "") -> MissionInvalid:
    return MissionInvalid([Problem(file, line, col, path, message)])


def read_text(file: str, raw: bytes) -> str:
    """Decode a mission file, refusing what is too large or not UTF-8."""
    if len(raw) > MAX_BYTES:
        size = len(raw) / (1024 * 1024)
        raise _problem(file, 0, 0, f"the file is {size:.1f} MB; a mission file may be at most 1 MB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise _problem(
            file, line, col, f"the file is not UTF-8 text (byte 0x{raw[e.start]:02x}); save it with UTF-8 encoding"
        ) from None
    return text.removeprefix("\ufeff")


def load(file: str, text: str, *, libyaml: bool = True) -> Located:
    """Parse ``text`` (the contents of ``file``) into located plain data.

    ``libyaml=False`` reads with the pure-Python parser only (the same results, more slowly)."""
    deep = _too_deep(text, libyaml)
    if deep is not None:
        mark, path = deep
        raise MissionInvalid([Problem(file, mark.line + 1, mark.column + 1, render_path(None, path), _DEEP)])
    try:
        node = _compose(text, libyaml)
    except yaml.MarkedYAMLError as e:
        raise _translate_parse_error(file, text, e) from None
    except yaml.YAMLError as e:  # pragma: no cover - PyYAML marks nearly everything
        raise _problem(file, 0, 0, f"this is not valid YAML: {e}") from None
    except RecursionError:  # pragma: no cover - _too_deep finds what would recurse this far
        raise _problem(file, 0, 0, _DEEP) from None
    if node is None:
        raise _problem(file, 0, 0, "the file is empty; a mission needs at least 'mission' and 'steps'")
    located = Located(file=file, data=None, text=text)
    builder = _Builder(located)
    located.data = builder.build(node, (), 0)
    problems = [Problem(file, line, col, render_path(located.data, raw), message)
                for line, col, raw, message in builder.problems]
    if builder.bombed:
        raise MissionInvalid(problems)
    located.problems = problems
    return located


def _translate_parse_error(file: str, text: str, e: yaml.MarkedYAMLError) -> MissionInvalid:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    problem = (e.problem or "").strip()
    source_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    if "'\\t'" in problem or ("\t" in source_line[: max(col, 1)] and "token" in problem):
        msg = "a tab character is used for indentation; YAML allows only spaces there"
    elif "expected a single document" in str(e) or "but found another document" in str(e):
        msg = "the file holds more than one YAML document ('---'); a mission is one document"
    elif e.context and "flow" in e.context and e.context_mark is not None and e.context_mark.line + 1 < line:
        bracket = "{" if "mapping" in e.context else "["
        closing = "}" if bracket == "{" else "]"
        msg = (f"the '{bracket}' opened on line {e.context_mark.line + 1} is not closed with '{closing}' before "
               "this point")
    else:
        context = f"{e.context}, " if e.context else ""
        msg = f"this is not valid YAML: {context}{problem}"
        if "${{" in source_line:
            msg += "; an expression inside [ ] or { } must be quoted: \"${{ ... }}\""
        elif ":" in source_line and "mapping values are not allowed" in problem:
            msg += "; if a value contains ': ', put it in quotes"
    return _problem(file, line, col, msg)


def _short(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


class _Builder:
    """Turns a composed node graph into plain data, collecting problems instead of stopping."""

    def __init__(self, located: Located):
        self.loc = located
        self.problems: list[tuple] = []  # (line, column, path, message)
        self.count = 0
        self.bombed = False
        self.constructor = _Loader("")

    def _add(self, node: yaml.Node, message: str, path: Path = ()) -> None:
        # the path is rendered once the data is built, so that steps can be named by their id
        self.problems.append((node.start_mark.line + 1, node.start_mark.column + 1, path, message))

    def build(self, node: yaml.Node, path: Path, depth: int):
        self.count += 1
        if self.count > MAX_NODES:
            if not self.bombed:
                self.bombed = True
                self._add(node, f"anchors and aliases expand this file past {MAX_NODES:,} values; "
                          "that is an 'alias bomb', not a mission — write the values out, or use fewer aliases")
            return None
        if depth > MAX_DEPTH:
            self._add(node, _DEEP, path)
            self.bombed = True
            self.count = MAX_NODES + 1
            return None
        self.loc.values.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if node.tag not in _PLAIN_TAGS:
            self._add(node, f"the tag '{_short(node.tag)}' is not allowed; missions hold only plain text, numbers, "
                      "true/false, lists and mappings", path)
            return None
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i), depth + 1) for i, child in enumerate(node.value)]
        return self._mapping(node, path, depth)

    def _scalar(self, node: yaml.ScalarNode, path: Path):
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            self._add(node, f"the tag '{_short(node.tag)}' is not allowed; missions hold only plain text, numbers, "
                      "true/false, lists and mappings", path)
            return None
        if isinstance(value, (_dt.date, _dt.datetime)):
            return value.isoformat()  # JSON has no dates: keep what the author wrote
        if isinstance(value, bytes):
            self._add(node, "binary values (!!binary) are not allowed in a mission", path)
            return None
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict:
        result: dict = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                return self._non_scalar_key(node, key_node, path)
            key = key_node.value
            if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                self._add(key_node, "merge keys ('<<') are not supported; write the keys out in full")
                continue
            if key in first_seen:
                self._add(key_node, f"the key '{key}' appears twice in this mapping (first on line "
                          f"{first_seen[key]}); YAML would silently keep only the last — remove one", (*path, key))
                continue
            first_seen[key] = key_node.start_mark.line + 1
            self.loc.keys[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def _non_scalar_key(self, parent: yaml.MappingNode, key_node: yaml.Node, path: Path):
        if parent.flow_style and isinstance(key_node, yaml.MappingNode) and key_node.flow_style:
            inner = " ".join(k.value for k, _ in key_node.value if isinstance(k, yaml.ScalarNode))
            self._add(parent, f"'{{{{ {inner} }}}}' was read by YAML as a mapping, not as an expression; "
                      f"studiox expressions are written '${{{{ {inner} }}}}'", path)
            return f"${{{{ {inner} }}}}"  # read on as the author meant it, so later checks still help
        self._add(key_node, "a key must be plain text, not a list or a mapping", path)
        return None
