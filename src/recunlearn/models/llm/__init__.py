"""Language-model recommenders (TALLRec-style prompts, LoRA adapters, mixtures of adapters)."""
