"""In-process fake LLM servers for tests and offline demos.

* :mod:`lakehouse.fakes.ollama`: Ollama's HTTP API (``/api/tags``, ``/api/embed``,
  ``/api/embeddings``, ``/api/chat``, ``/api/generate``) with deterministic sha256
  embeddings and scriptable chat answers; ``lakehouse fake-ollama`` runs it.
* :mod:`lakehouse.fakes.openai`: an OpenAI-compatible ``/chat/completions`` server, the
  shape OpenRouter, OpenCode and Kimi speak; ``lakehouse fake-openai`` runs it.

Both are plain aiohttp applications built from a state object (:class:`FakeOllama`,
:class:`FakeOpenAI`) that a test keeps a handle on to script replies, inject failures or
delays, and read back the requests the server received::

    fake = FakeOllama(models={"nomic-embed-text": 768, "qwen2.5": 0})
    server = await aiohttp_server(fake.app())
    fake.script("first answer", Reply(status=500, body="boom"), "third answer")
"""

from __future__ import annotations

from ._script import Recorded, Reply, Rule
from .ollama import FakeOllama, fake_embedding
from .openai import FakeOpenAI

__all__ = ["FakeOllama", "FakeOpenAI", "Recorded", "Reply", "Rule", "fake_embedding"]
