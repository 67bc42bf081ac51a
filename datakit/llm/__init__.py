"""LLM-assisted synthesis through any OpenAI-compatible endpoint (DESIGN.md, "LLM steps").

``config`` (what a build may spend and how it retries), ``request`` + ``cache`` (content-addressed
requests and their stored answers), ``client`` + ``accounting`` (retries, concurrency, budgets,
tokens and cost; offline when no endpoint is set), ``tasks`` + ``validate`` (prompts, schemas and
the checks every answer passes), ``runner`` (the build's step that answers converters' requests
in rounds: the LLM capability of ``converters.base``), ``replies`` (what a converter does with a
reply: check it, or say why a sample is missing), ``judge`` (the grading call GRPO and evaluation reuse), ``grpo_prep`` (the GRPO
set drawn from built shards) and ``tarball`` (a stand-in sample tar reader/writer).

Nothing here is imported by ``datakit`` itself: importing the package costs nothing.
"""
