"""The models: one async client for every model reached over HTTP (with its request cache, limits and
prices), which model plays each role, and the servers that run a model on this machine so that the same
client reaches it (each a :class:`skillmix.processes.ChildServer`: a child process on a loopback port).

The client:

* :mod:`skillmix.llm.client`: ``LLMClient``, ``Endpoint``, ``ClientConfig``, ``Completion``;
* :mod:`skillmix.llm.cache`: ``RequestCache``, the per-request cache and spend ledger (crash-safe resume);
* :mod:`skillmix.llm.limits`: ``SharedRateLimiter``, requests and tokens per minute for a whole run;
* :mod:`skillmix.llm.prices`: ``PriceTable``, USD per million tokens;
* :mod:`skillmix.llm.roles`: ``ResolvedModel``, the model of a role, where it runs and whether it is priced.

The local servers:

* :mod:`skillmix.llm.embedded`: ``EmbeddedServer``, Gemma 3 270M served by llama.cpp;
* :mod:`skillmix.llm.local`: ``LocalStudent``, a Hugging Face checkpoint (a folder or a Hub id at a
  revision) checked, fingerprinted and served by vLLM or by the transformers server;
* :mod:`skillmix.llm.hf_server`: that transformers server (``python -m skillmix.llm.hf_server``), batched;
  :mod:`skillmix.llm.hf_wire`: the requests it accepts and the bodies it answers.
"""
