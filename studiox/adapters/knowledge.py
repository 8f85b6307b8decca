"""Enterprise Knowledge: search a mission's document sources, with citations.

A source is a folder (or one file) of text documents. Documents are cut into passages at blank
lines (joined up to about 800 characters) and ranked with BM25, the classic lexical ranking:
no model, no network, the same answer every time, which a durable engine needs. Each passage
carries a citation (``source:file#passage``) that the Observations rail and the verdict can show.
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
        root = (base_dir / spec["path"]).resolve()
        if not root.exists():
            raise StepError("knowledge", f"the knowledge source '{name}' points to {root}, which does not exist")
        files = [root] if root.is_file() else sorted(p for p in root.glob(spec.get("glob", "**/*")) if p.is_file())
        passages: list[Passage] = []
        for path in files:
            if "glob" not in spec and path.suffix.lower() not in TEXT_SUFFIXES:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # not a text document
            relative = path.name if root.is_file() else str(path.relative_to(root))
            passages += passages_of(name, relative, text)
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


class Knowledge:
    """The knowledge door: one index per source, built on first use in a run."""

    def __init__(self, sources: dict, base_dir: Path):
        self.sources = sources
        self.base_dir = base_dir
        self.indexes: dict[str, Index] = {}

    async def search(self, source: str, query: str, top: int) -> list[dict]:
        if source not in self.indexes:
            self.indexes[source] = Index.build(source, self.sources[source], self.base_dir)
        return [{"citation": p.citation, "source": p.source, "file": p.file, "passage": p.number, "score": score,
                 "text": p.text} for p, score in self.indexes[source].search(query, top)]
