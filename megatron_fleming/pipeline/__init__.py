"""`fleming pipeline`: the paper's recipe as one chain of steps, run locally or on Slurm.

data builds (datakit recipes) -> stages 1-4 (`fleming train`, `fleming grpo`), each starting from
the previous stage's final weights -> `fleming eval run` after each stage -> a report. Every step
is a command line of the project's public CLIs; each writes a completion marker holding the
fingerprint of its inputs, so a rerun skips finished steps and redoes exactly the steps
downstream of a change. See docs/pipeline.md.
"""
