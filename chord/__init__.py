"""chord: CHORD (arXiv 2508.11408) post-training, one on-policy GRPO run with SFT on expert data
as an auxiliary loss weighted globally by mu and per token by phi = p(1-p).

`import chord` pulls in neither vLLM nor DeepSpeed nor Triton: they live in chord.rollout and
chord.learner and are imported there only.
"""

__version__ = "0.1.0"
