"""A mission's knowledge sources, outside a run: index them, search them, say how fresh their
indexes are, and print the passage a citation names (``studiox knowledge ...``)."""

from __future__ import annotations

import re
from pathlib import Path

from .adapters.knowledge import Knowledge, citation, files_of
from .errors import RunNotFound, StepError, UsageError, suggest


def door(mission, home: Path) -> Knowledge:
    return Knowledge(mission.knowledge, mission.base_dir, home / "knowledge")


def _names(mission, source: str | None) -> list[str]:
    if source is None:
        return list(mission.knowledge)
    if source not in mission.knowledge:
        raise UsageError(f"the mission has no knowledge source '{source}'{suggest(source, mission.knowledge)}")
    return [source]


def index(mission, home: Path, source: str | None = None, progress=None) -> list[dict]:
    """Bring each source's index up to date; what each update did (``progress(source, done, total)``)."""
    knowledge = door(mission, home)
    done = []
    try:
        for name in _names(mission, source):
            told = (lambda done, total, name=name: progress(name, done, total)) if progress else None
            found, changes = _step(knowledge.index, name, told)
            done.append({"source": name, **found.stats(), "read": changes.read, "removed": changes.removed,
                         "moved": changes.moved, "unchanged": changes.unchanged, "notes": list(knowledge.notes)})
            found.close()
    finally:
        knowledge.close()
    return done


def search(mission, home: Path, source: str, query: str, where: dict | None, top: int) -> list[dict]:
    import asyncio

    _names(mission, source)
    knowledge = door(mission, home)
    try:
        return _step(lambda: asyncio.run(knowledge.search(source, query, top, where)))
    finally:
        knowledge.close()


def status(mission, home: Path) -> list[dict]:
    """Each source: documents and passages indexed, and which files changed since."""
    rows = []
    knowledge = door(mission, home)
    for name in mission.knowledge:
        path = knowledge.index_path(name)
        if not isinstance(path, Path) or not path.exists():
            rows.append({"source": name, "indexed": False, "documents": 0, "passages": 0, "stale": None})
            continue
        from .adapters.knowledge_index import SourceIndex

        found = SourceIndex(path)
        known = {row[0]: row[1:] for row in found.con.execute("SELECT path, size, mtime FROM files")}
        _, files = _step(files_of, name, mission.knowledge[name], mission.base_dir)
        stale = sorted([p for p, now in files.items() if known.get(p) != now] + [p for p in known if p not in files])
        rows.append({"source": name, "indexed": True, **found.stats(), "last_indexed": path.stat().st_mtime,
                     "stale": stale})
        found.close()
    return rows


_CITATION = re.compile(r"^(?P<source>[^/]+)/(?P<file>.+)#L(?P<first>\d+)(?:-L(?P<last>\d+))?$")


def show(mission, citation_text: str) -> dict:
    """The passage a citation names, read from the document as it is now."""
    match = _CITATION.match(citation_text)
    if match is None:
        raise UsageError(f"'{citation_text}' is not a citation: write it as SOURCE/FILE#L3-L12")
    source = match["source"]
    _names(mission, source)
    root, _ = _step(files_of, source, mission.knowledge[source], mission.base_dir)
    path = root if root.is_file() else root / match["file"]
    if not path.is_file():
        raise RunNotFound(f"{citation_text}: {path} does not exist (any more)")
    first, last = int(match["first"]), int(match["last"] or match["first"])
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")[first - 1:last]
    return {"citation": citation(source, match["file"], [first, last]), "file": str(path), "lines": [first, last],
            "text": "\n".join(lines)}


def _step(call, *args):
    """A knowledge problem outside a run is a usage error (exit 2), said the same way."""
    try:
        return call(*args)
    except StepError as e:
        raise UsageError(e.message) from None
