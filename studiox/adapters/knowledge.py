"""Enterprise Knowledge: search a mission's document sources, with citations.

A source is a folder (or one file) of text documents. Documents are cut into passages at blank
lines (joined up to about 800 characters) and ranked with BM25, the classic lexical ranking:
no model, no network, the same answer every time, which a durable engine needs. Each passage
carries a citation (``source:file#passage``) that the Observations rail and the verdict can show.

The knowledge door is a border: a document that cannot be read or is not UTF-8 text, a missing
folder, an unusable glob, or anything else that goes wrong below it is a step error of kind
"knowledge" that names the source and the file. No document is silently left out of a search.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import StepError

TEXT_SUFFIXES = {".md", ".txt", ".rst", ".csv", ".json", ".yaml", ".yml", ".html", ".xml"}
PASSAGE_CHARS = 800
_WORD = re.compile(r"[\w-]+", re.UNICODE)
K1, B = 1.5, 0.75


@dataclass(frozen=True)
class Passage:
    source: str
    file: str
    number: int
    text: str

    @property
    def citation(self) -> str:
        return f"{self.source}:{self.file}#{self.number}"


def _stem(word: str) -> str:
    """A very light stemmer: plurals match their singular ("hotels" finds "hotel")."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _tokens(text: str) -> list[str]:
    words = [_stem(w.lower()) for w in _WORD.findall(text)]
    # "PO-1042" should match "PO-1042", "po 1042" and "1042": keep the word and its parts
    return words + [part for w in words if "-" in w for part in w.split("-") if part]


def passages_of(source: str, file: str, text: str) -> list[Passage]:
    """A document cut into passages at blank lines, each up to about PASSAGE_CHARS."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    merged: list[str] = []
    for block in blocks:
        if merged and len(merged[-1]) + len(block) < PASSAGE_CHARS:
            merged[-1] += "\n\n" + block
        else:
            merged.append(block)
    return [Passage(source, file, i + 1, t) for i, t in enumerate(merged)]


class Index:
    """A BM25 index over every passage of one knowledge source."""

    def __init__(self, passages: list[Passage]):
        self.passages = passages
        self.terms = [Counter(_tokens(p.text)) for p in passages]
        self.lengths = [sum(t.values()) for t in self.terms]
        self.average = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        frequency: Counter = Counter()
        for terms in self.terms:
            frequency.update(terms.keys())
        n = len(passages)
        self.idf = {t: math.log(1 + (n - df + 0.5) / (df + 0.5)) for t, df in frequency.items()}

    @classmethod
    def build(cls, name: str, spec: dict, base_dir: Path) -> Index:
        """Index every document of a source: one file, or the files of a folder (text suffixes, or its glob)."""
        root = (base_dir / spec["path"]).resolve()
        if not root.exists():
            raise StepError("knowledge", f"the knowledge source '{name}' points to {root}, which does not exist")
        if root.is_file():
            files = [root]  # named on purpose: read whatever its suffix
        else:
            pattern = spec.get("glob")
            try:
                found = sorted(p for p in root.glob("**/*" if pattern is None else pattern) if p.is_file())
            except (ValueError, NotImplementedError) as e:  # an empty or absolute pattern
                raise StepError("knowledge", f"the knowledge source '{name}' cannot use the glob '{pattern}': {e}; "
                                "give a pattern relative to its folder, such as '**/*.md'") from None
            files = found if pattern is not None else [p for p in found if p.suffix.lower() in TEXT_SUFFIXES]
        passages: list[Passage] = []
        for path in files:
            relative = path.name if root.is_file() else str(path.relative_to(root))
            passages += passages_of(name, relative, _read(name, relative, path))
        return cls(passages)

    def search(self, query: str, top: int) -> list[tuple[Passage, float]]:
        wanted = set(_tokens(query))
        scored = []
        for passage, terms, length in zip(self.passages, self.terms, self.lengths, strict=True):
            score = 0.0
            for term in wanted & terms.keys():
                tf = terms[term]
                score += self.idf[term] * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / (self.average or 1)))
            if score > 0:
                scored.append((passage, round(score, 4)))
        scored.sort(key=lambda pair: (-pair[1], pair[0].citation))
        return scored[:top]


def _read(source: str, relative: str, path: Path) -> str:
    """A document's text; one that cannot be read or is not UTF-8 is the step's error, named."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise StepError("knowledge", f"the knowledge source '{source}' cannot read {relative}: "
                        f"{e.strerror or e}") from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise StepError("knowledge", f"the knowledge source '{source}' cannot use {relative}: it is not UTF-8 text "
                        f"(byte 0x{raw[e.start]:02x} on line {line}); save it as UTF-8, or choose the documents "
                        "with a glob that leaves it out") from None


class Knowledge:
    """The knowledge door: one index per source, built on first use in a run."""

    def __init__(self, sources: dict, base_dir: Path):
        self.sources = sources
        self.base_dir = base_dir
        self.indexes: dict[str, Index] = {}

    async def search(self, source: str, query: str, top: int) -> list[dict]:
        """The passages of a source that best answer a query; every failure is a StepError."""
        if source not in self.sources:
            raise StepError("knowledge", f"there is no knowledge source '{source}'")
        try:
            if source not in self.indexes:
                self.indexes[source] = Index.build(source, self.sources[source], self.base_dir)
            hits = self.indexes[source].search(query, top)
        except StepError:
            raise
        except OSError as e:  # the folder itself, or one below it, cannot be listed
            raise StepError("knowledge", f"the knowledge source '{source}' cannot be read: {e.strerror or e}"
                            f"{f' ({e.filename})' if e.filename else ''}") from None
        except Exception as e:  # noqa: BLE001 - the border: nothing raised below it reaches the engine
            raise StepError("knowledge", f"the knowledge source '{source}' could not be searched "
                            f"({type(e).__name__}: {e})") from None
        return [{"citation": p.citation, "source": p.source, "file": p.file, "passage": p.number, "score": score,
                 "text": p.text} for p, score in hits]
