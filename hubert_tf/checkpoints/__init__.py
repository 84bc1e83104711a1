"""Checkpoints: reading every Hugging Face HuBERT format, the weight-name table, saving."""
