"""A persistent full-text index of one knowledge source: SQLite FTS5 (BM25 ranking built in),
updated incrementally, with exact filters on document metadata and citations people can read.

One database per source (``INDEX.db``). ``files`` remembers each document's size, mtime and
content hash: an update re-reads only files that are new or changed (size or mtime differ, then
the hash says whether the content did) and drops the passages of files that are gone; a file
renamed with the same content is re-pointed, not re-read. Passages are cut at Markdown headings
and blank lines, up to about PASSAGE_CHARS, each with its heading path and line range, so a
citation reads ``purchase_orders/PO-1042.md#L3-L12``. Markdown front matter (YAML between
``---`` lines) becomes the document's metadata, filterable exactly (``where``), and ``file``
filters the document's path with a glob.

Tokenisation is FTS5's ``porter unicode61``: Unicode-aware, stemmed ("hotels" finds "hotel"),
and a part number's pieces are tokens of their own ("PO-1042" finds "PO-1042", "PO 1042" and
"1042"). A query is its tokens joined by OR, ranked by BM25.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

PASSAGE_CHARS = 800
INDEX_FORMAT = 2  # an index of another format is rebuilt from the documents
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime REAL NOT NULL,
                                  sha256 TEXT NOT NULL, meta TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5(
    text, heading, path UNINDEXED, first_line UNINDEXED, last_line UNINDEXED, meta UNINDEXED,
    tokenize = 'porter unicode61');
CREATE TABLE IF NOT EXISTS owners (passage INTEGER PRIMARY KEY, path TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS owners_by_path ON owners (path);
"""
_WORD = re.compile(r"\w+", re.UNICODE)
_SIMPLE = re.compile(r"^(?P<key>[A-Za-z_][\w-]*):[ \t]+(?P<value>[^\[\]{}#&*!|>'\"%@`,][^#]*?)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Piece:
    text: str
    heading: str
    first_line: int
    last_line: int


@dataclass
class Changes:
    """What an update did."""

    read: list[str]
    removed: list[str]
    moved: list[tuple[str, str]]
    unchanged: int


def front_matter(text: str) -> tuple[dict, str, int]:
    """(the document's YAML front matter, its text after it, the line the text starts on)."""
    if not text.startswith("---\n"):
        return {}, text, 1
    end = text.find("\n---", 4)
    if end < 0:
        return {}, text, 1
    block = text[4:end]
    simple = [_SIMPLE.match(line) for line in block.split("\n") if line.strip()]
    if all(simple):  # "key: value" lines, the usual case: no YAML parser needed (ten times faster)
        meta: object = {m["key"]: m["value"].strip().strip("'\"") for m in simple if m is not None}
    else:
        import yaml

        try:
            meta = yaml.safe_load(block) or {}
        except yaml.YAMLError:
            return {}, text, 1
    rest_start = text.find("\n", end + 4)
    rest = "" if rest_start < 0 else text[rest_start + 1:]
    return (meta if isinstance(meta, dict) else {}), rest, text[:rest_start + 1].count("\n") + 1


def pieces(text: str, first_line: int = 1) -> list[Piece]:
    """A document cut at headings and blank lines, each piece up to about PASSAGE_CHARS, with its
    heading path and line range."""
    found: list[Piece] = []
    path: list[str] = []
    block: list[str] = []
    start = first_line

    def flush(end: int) -> None:
        body = "\n".join(block).strip()
        if body:
            heading = " > ".join(path)
            last = found[-1] if found else None
            if last and last.heading == heading and len(last.text) + len(body) < PASSAGE_CHARS:
                found[-1] = Piece(last.text + "\n\n" + body, heading, last.first_line, end)
            else:
                found.append(Piece(body, heading, start, end))
        block.clear()

    for number, line in enumerate(text.split("\n"), start=first_line):
        heading = _HEADING.match(line)
        if heading or not line.strip():
            flush(number - 1)
            start = number + 1
            if heading:
                level = len(heading.group(1))
                del path[level - 1:]
                path.append(heading.group(2))
            continue
        if not block:
            start = number
        block.append(line)
    flush(first_line + text.count("\n"))
    return found


def records(suffix: str, text: str) -> list[tuple[Piece, dict]]:
    """CSV rows and JSON/JSONL objects: one passage each, its fields kept as metadata."""
    found: list[tuple[Piece, dict]] = []
    if suffix == ".csv":
        import csv
        import io

        for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            fields = {k: v for k, v in row.items() if k is not None}
            found.append((Piece("; ".join(f"{k}: {v}" for k, v in fields.items()), "", number, number), fields))
        return found
    if suffix == ".jsonl":
        items = [(n, json.loads(line)) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    else:
        data = json.loads(text)
        items = [(1, item) for item in (data if isinstance(data, list) else [data])]
    for number, item in items:
        fields = item if isinstance(item, dict) else {"value": item}
        found.append((Piece("; ".join(f"{k}: {json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
                                     for k, v in fields.items()), "", number, number), fields))
    return found


def html_text(markup: str) -> str:
    """An HTML document's text (no markup, scripts or styles), one block per line."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag, attrs):
            if tag in ("script", "style"):
                self.skip += 1
            if tag in ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"):
                self.parts.append("\n\n" if tag.startswith("h") or tag == "p" else "\n")
            if tag.startswith("h") and tag[1:].isdigit():
                self.parts.append("#" * int(tag[1:]) + " ")

        def handle_endtag(self, tag):
            if tag in ("script", "style"):
                self.skip -= 1
            if tag.startswith("h") and tag[1:].isdigit():
                self.parts.append("\n\n")

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(markup)
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.parts)).strip() + "\n"


class SourceIndex:
    """The FTS5 index of one source, at ``db`` (":memory:" for a throwaway one)."""

    def __init__(self, db: Path | str):
        self.con = sqlite3.connect(str(db), isolation_level=None)
        self._vocab: bool | None = None
        self.con.execute("PRAGMA journal_mode = WAL")
        if self.con.execute("PRAGMA user_version").fetchone()[0] != INDEX_FORMAT:  # older or new: made afresh
            self.con.executescript("DROP TABLE IF EXISTS passages; DROP TABLE IF EXISTS files; "
                                   "DROP TABLE IF EXISTS owners;")
            self.con.executescript(SCHEMA)
            self.con.execute(f"PRAGMA user_version = {INDEX_FORMAT}")

    def close(self) -> None:
        self.con.close()

    def update(self, seen: Mapping[str, tuple[int, float]], read: Callable[[str], str], progress=None) -> Changes:
        """Bring the index in line with the documents ``seen`` (relative path → size, mtime);
        ``read(relative) -> text``; ``progress(done, total)`` after each file, when given."""
        known = {row[0]: row[1:] for row in self.con.execute("SELECT path, size, mtime, sha256 FROM files")}
        changes = Changes([], [], [], 0)
        gone = {p: known[p] for p in known if p not in seen}
        self.con.execute("BEGIN")
        try:
            for done, (relative, (size, mtime)) in enumerate(sorted(seen.items()), start=1):
                if progress is not None:
                    progress(done, len(seen))
                old = known.get(relative)
                if old is not None and old[0] == size and old[1] == mtime:
                    changes.unchanged += 1
                    continue
                text = read(relative)
                digest = hashlib.sha256(text.encode()).hexdigest()
                if old is not None and old[2] == digest:  # touched, not changed
                    self.con.execute("UPDATE files SET size = ?, mtime = ? WHERE path = ?", (size, mtime, relative))
                    changes.unchanged += 1
                    continue
                moved_from = next((p for p, row in gone.items() if row[2] == digest), None)
                if moved_from is not None:  # renamed: the same passages, under the new name
                    self.con.execute("UPDATE passages SET path = ? WHERE rowid IN (SELECT passage FROM owners WHERE "
                                     "path = ?)", (relative, moved_from))
                    self.con.execute("UPDATE owners SET path = ? WHERE path = ?", (relative, moved_from))
                    self.con.execute("UPDATE files SET path = ?, size = ?, mtime = ? WHERE path = ?",
                                     (relative, size, mtime, moved_from))
                    del gone[moved_from]
                    changes.moved.append((moved_from, relative))
                    continue
                self._index(relative, text, size, mtime, digest, replacing=old is not None)
                changes.read.append(relative)
            for relative in gone:
                self._drop(relative)
                self.con.execute("DELETE FROM files WHERE path = ?", (relative,))
                changes.removed.append(relative)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return changes

    def _drop(self, relative: str) -> None:
        """Remove a document's passages, found by the owners table (an FTS5 column cannot be indexed)."""
        self.con.execute("DELETE FROM passages WHERE rowid IN (SELECT passage FROM owners WHERE path = ?)", (relative,))
        self.con.execute("DELETE FROM owners WHERE path = ?", (relative,))

    def _index(self, relative: str, text: str, size: int, mtime: float, digest: str, *, replacing: bool) -> None:
        suffix = Path(relative).suffix.lower()
        meta: dict = {}
        if suffix in (".csv", ".json", ".jsonl"):
            found = records(suffix, text)
        else:
            first = 1
            if suffix in (".md", ".markdown"):
                meta, text, first = front_matter(text)
            elif suffix in (".html", ".htm"):
                text = html_text(text)
            found = [(p, {}) for p in pieces(text, first)]
        if replacing:
            self._drop(relative)
        for piece, fields in found:
            cursor = self.con.execute(
                "INSERT INTO passages (text, heading, path, first_line, last_line, meta) VALUES (?, ?, ?, ?, ?, ?)",
                (piece.text, piece.heading, relative, piece.first_line, piece.last_line,
                 json.dumps(fields, default=str, ensure_ascii=False)))
            self.con.execute("INSERT INTO owners (passage, path) VALUES (?, ?)", (cursor.lastrowid, relative))
        self.con.execute("INSERT OR REPLACE INTO files (path, size, mtime, sha256, meta) VALUES (?, ?, ?, ?, ?)",
                         (relative, size, mtime, digest, json.dumps(meta, default=str, ensure_ascii=False)))

    def search(self, query: str, top: int, where: dict | None = None) -> list[dict]:
        """The best passages for ``query`` (BM25), among documents whose metadata equals ``where``.

        A word found in more than half the passages adds next to nothing to a BM25 score (FTS5
        clamps its IDF near zero) but makes every passage a candidate, so it is left out of the
        first try; only when that finds fewer than ``top`` passages is the query run whole."""
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
        if not words:
            return []
        rare = self._rare(words)
        ranked = self._ranked(rare, top, where) if rare != words else []
        if len(ranked) < top:
            ranked = self._ranked(words, top, where)
        if not ranked:
            return []
        found = {row[0]: row[1:] for row in self.con.execute(
            "SELECT p.rowid, p.text, p.heading, p.path, p.first_line, p.last_line, f.meta, p.meta FROM passages p "
            f"JOIN files f ON f.path = p.path WHERE p.rowid IN ({', '.join('?' * len(ranked))})",
            [rowid for rowid, _ in ranked])}
        hits = []
        for rowid, rank in ranked:
            text, heading, path, first, last, meta, own = found[rowid]
            hits.append({"text": text, "heading": heading, "file": path, "lines": [first, last],
                         "score": round(-rank, 4),
                         "meta": {**json.loads(meta), **json.loads(own or "{}")}})  # a record's fields, over its file's
        return hits

    def _ranked(self, words: list[str], top: int, where: dict | None) -> list[tuple[int, float]]:
        """(rowid, BM25 rank) of the best ``top`` passages matching any of ``words``: no text is read
        for the passages that do not make it."""
        match = " OR ".join(f'"{w}"' for w in words)
        filters, args = [], []
        for key, value in (where or {}).items():  # a record's own field, else its document's
            if key == "file":  # the document's path, matched as a glob ('2024/*.md', '*PO-1042*')
                filters.append("p.path GLOB ?")
                args.append(str(value))
                continue
            path = "$." + json.dumps(str(key))
            filters.append("CAST(COALESCE(json_extract(p.meta, ?), (SELECT json_extract(f.meta, ?) FROM files f "
                           "WHERE f.path = p.path)) AS TEXT) = ?")
            args += [path, path, str(value).lower() if isinstance(value, bool) else str(value)]
        return self.con.execute(
            "SELECT p.rowid, bm25(passages) AS rank FROM passages p WHERE passages MATCH ?"
            + "".join(f" AND {f}" for f in filters) + " ORDER BY rank, p.path, p.first_line LIMIT ?",
            (match, *args, top)).fetchall()

    def _rare(self, words: list[str]) -> list[str]:
        """``words`` without those in more than half the passages (all of them if every one is);
        a word the vocabulary does not list as such (a stemmed form) is kept."""
        if self._vocab is None:
            self.con.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocab USING fts5vocab(main, passages, row)")
            self._vocab = True
        total = self.con.execute("SELECT COUNT(*) FROM owners").fetchone()[0]
        common = {term for term, docs in self.con.execute(
            f"SELECT term, doc FROM temp.vocab WHERE term IN ({', '.join('?' * len(words))})", words)
            if docs * 2 > total}
        return [w for w in words if w not in common] or words

    def stats(self) -> dict:
        files = self.con.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        passages = self.con.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
        return {"documents": files, "passages": passages}
