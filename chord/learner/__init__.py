"""Learner side: the DeepSpeed engine. Only chord.learner.deepspeed_learner imports deepspeed."""
