"""Evaluation of a generation (Appendix C.3, Sec. 3.1.3): held-out perplexity, next-token probes
with the corpus truth and Remark B.1's minimal error, and statistics of a generated corpus."""
