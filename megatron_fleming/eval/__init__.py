"""Evaluation on the paper's benchmarks, scored as MedEvalKit scores them (done right where it is
wrong): prompts, answer parsing (``answers``, shared with the GRPO rewards), scoring rules,
ROUGE-L/CIDEr, the LLM judge, generation backends, and the ``fleming eval`` runner and report.
The benchmark readers live in ``datakit.benchmarks`` (decontamination reads through them too).
"""

BACKENDS = ("fleming", "transformers")  # generation backends of `fleming eval run`, default first
