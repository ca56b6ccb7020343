"""The model client: one async client for every remote model, with its request cache, prices and the
embedded llama.cpp server.

* :mod:`skillmix.llm.client`: ``LLMClient``, ``Endpoint``, ``ClientConfig``, ``Completion``;
* :mod:`skillmix.llm.cache`: ``RequestCache``, the per-request cache and spend ledger (crash-safe resume);
* :mod:`skillmix.llm.prices`: ``PriceTable``, USD per million tokens;
* :mod:`skillmix.llm.embedded`: ``EmbeddedServer``, Gemma 3 270M served by llama.cpp on loopback.
"""
