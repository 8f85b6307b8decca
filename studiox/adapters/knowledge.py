"""Enterprise Knowledge: search a mission's document sources, with citations.

A source is a folder (or one file) of documents, indexed in SQLite FTS5 (knowledge_index.py):
kept in the state folder and brought up to date incrementally on a run's first search, ranked
with BM25 (no model, no network, the same answer every time, which a durable engine needs).
Each passage carries a citation people can read (``source/file#L3-L12``), its heading and its
text, and can be filtered exactly on its document's metadata (``where``).

The knowledge door is a border: a document that cannot be read or is not UTF-8 text, a missing
folder, an unusable glob, or anything else that goes wrong below it is a step error of kind
"knowledge" that names the source and the file. No document is silently left out of a search.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from stat import S_ISREG

from ..errors import StepError
from .knowledge_index import Changes, SourceIndex

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst", ".csv", ".json", ".jsonl", ".yaml", ".yml", ".html", ".htm",
                 ".xml"}


def citation(source: str, file: str, lines: list[int]) -> str:
    """``purchase_orders/PO-1042.md#L3-L12``: which source, file and lines a passage is."""
    first, last = lines
    return f"{source}/{file}#L{first}" + (f"-L{last}" if last != first else "")


def files_of(name: str, spec: dict, base_dir: Path) -> tuple[Path, dict[str, tuple[int, float]]]:
    """A source's root and its documents, each with its size and mtime: one file, or the files of a
    folder (the text suffixes, or its glob), by relative path."""
    root = (base_dir / spec["path"]).resolve()
    if not root.exists():
        raise StepError("knowledge", f"the knowledge source '{name}' points to {root}, which does not exist")
    if root.is_file():  # named on purpose: read whatever its suffix
        stat = root.stat()
        return root, {root.name: (stat.st_size, stat.st_mtime)}
    pattern = spec.get("glob")
    if pattern is None:
        suffixes = TEXT_SUFFIXES | ({".pdf"} if _pdf_reader() else set())  # PDFs when pypdf can read them
        return root, _scan(str(root), "", suffixes, {})
    try:
        found = {}
        for path in root.glob(pattern):
            stat = path.stat()
            if S_ISREG(stat.st_mode):
                found[path.as_posix()[len(root.as_posix()) + 1:]] = (stat.st_size, stat.st_mtime)
    except (ValueError, NotImplementedError) as e:  # an empty or absolute pattern
        raise StepError("knowledge", f"the knowledge source '{name}' cannot use the glob '{pattern}': {e}; "
                        "give a pattern relative to its folder, such as '**/*.md'") from None
    return root, found


def _scan(folder: str, prefix: str, suffixes: set[str], found: dict) -> dict[str, tuple[int, float]]:
    """Every file below ``folder`` with one of ``suffixes``: one scandir per folder and one stat per
    document (a re-index of 10,000 unchanged documents is mostly this walk)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _scan(entry.path, f"{prefix}{entry.name}/", suffixes, found)
            elif os.path.splitext(entry.name)[1].lower() in suffixes and entry.is_file():
                stat = entry.stat()
                found[prefix + entry.name] = (stat.st_size, stat.st_mtime)
    return found


def _read(source: str, relative: str, path: Path) -> str:
    """A document's text; one that cannot be read or is not UTF-8 is the step's error, named."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise StepError("knowledge", f"the knowledge source '{source}' cannot read {relative}: "
                        f"{e.strerror or e}") from None
    if path.suffix.lower() == ".pdf":
        return _pdf_text(source, relative, raw)
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise StepError("knowledge", f"the knowledge source '{source}' cannot use {relative}: it is not UTF-8 text "
                        f"(byte 0x{raw[e.start]:02x} on line {line}); save it as UTF-8, or choose the documents "
                        "with a glob that leaves it out") from None


def _pdf_text(source: str, relative: str, raw: bytes) -> str:
    """A PDF's text, page after page (a blank line between pages), through the optional pypdf."""
    try:
        import pypdf
    except ImportError:
        raise StepError("knowledge", f"the knowledge source '{source}' has the PDF {relative}, and reading PDFs needs "
                        "pypdf: pip install 'studiox[pdf]' (or leave PDFs out with a glob)") from None
    import io

    try:
        pages = pypdf.PdfReader(io.BytesIO(raw)).pages
        return "\n\n".join((page.extract_text() or "").strip() for page in pages) + "\n"
    except Exception as e:  # noqa: BLE001 - a broken PDF is named, like any unreadable document
        raise StepError("knowledge", f"the knowledge source '{source}' cannot read the PDF {relative}: "
                        f"{type(e).__name__}: {e}") from None


def _pdf_reader() -> bool:
    import importlib.util

    return importlib.util.find_spec("pypdf") is not None


class Knowledge:
    """The knowledge door: one persistent index per source (in ``index_dir``, or in memory),
    brought up to date on its first search in a run."""

    def __init__(self, sources: dict, base_dir: Path, index_dir: Path | None = None):
        self.sources = sources
        self.base_dir = base_dir
        self.index_dir = index_dir
        self.indexes: dict[str, SourceIndex] = {}
        self.notes: list[str] = []  # what a search has to say besides its passages (a rebuilt index)

    def index_path(self, source: str) -> Path | str:
        if self.index_dir is None:
            return ":memory:"
        spec = self.sources[source]
        where = f"{(self.base_dir / spec['path']).resolve()}|{spec.get('glob') or ''}"
        return self.index_dir / f"{source}-{hashlib.sha256(where.encode()).hexdigest()[:12]}.db"

    def index(self, source: str, progress=None) -> tuple[SourceIndex, Changes]:
        """The source's index, updated: only new, changed or deleted files are read (``progress(done, total)``)."""
        root, files = files_of(source, self.sources[source], self.base_dir)
        path = self.index_path(source)

        def read(relative: str) -> str:
            return _read(source, relative, root if root.is_file() else root / relative)

        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            index = SourceIndex(path)
            changes = index.update(files, read, progress)
        except sqlite3.DatabaseError as e:  # a corrupt index is never trusted: made again from the documents
            assert isinstance(path, Path)
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
            self.notes.append(f"the index of '{source}' was unreadable ({e}) and was rebuilt from its documents")
            index = SourceIndex(path)
            changes = index.update(files, read)
        return index, changes

    def close(self) -> None:
        for index in self.indexes.values():
            index.close()
        self.indexes.clear()

    async def search(self, source: str, query: str, top: int, where: dict | None = None) -> list[dict]:
        """The passages of a source that best answer a query; every failure is a StepError."""
        if source not in self.sources:
            raise StepError("knowledge", f"there is no knowledge source '{source}'")
        try:
            if source not in self.indexes:
                self.indexes[source] = self.index(source)[0]
            hits = self.indexes[source].search(query, top, where)
        except StepError:
            raise
        except OSError as e:  # the folder itself, or one below it, cannot be listed
            raise StepError("knowledge", f"the knowledge source '{source}' cannot be read: {e.strerror or e}"
                            f"{f' ({e.filename})' if e.filename else ''}") from None
        except Exception as e:  # noqa: BLE001 - the border: nothing raised below it reaches the engine
            raise StepError("knowledge", f"the knowledge source '{source}' could not be searched "
                            f"({type(e).__name__}: {e})") from None
        return [{"citation": citation(source, h["file"], h["lines"]), "source": source, "file": h["file"],
                 "heading": h["heading"], "lines": h["lines"], "score": h["score"], "text": h["text"],
                 **({"fields": h["meta"]} if h["meta"] else {})} for h in hits]

