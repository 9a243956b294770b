"""lmcollapse: recursive training of auto-regressive language models, and why they collapse.

Implements "Theoretical Proof that Auto-regressive Language Models Collapse when Real-world Data is
a Finite Set": `lmcollapse.theory` (Section 2, pure numpy), configuration (`lmcollapse.config`) and
the `lmcollapse` command line (`lmcollapse --help`).
"""

__version__ = "0.1.0"
