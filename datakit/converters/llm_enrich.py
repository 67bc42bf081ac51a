"""Registers the ``llm_enrich`` converter (LLM label enrichment, video multiple choice).

The converter lives with the LLM layer in ``datakit.llm.synthesis``; importing it here puts it in
the registry like every other converter. The build runs it after a record's template converters,
through its one ``LLMSynthesizer`` (``datakit.slices``), never as a plain per-record call.
"""

import datakit.llm.synthesis  # noqa: F401  (registers "llm_enrich")
