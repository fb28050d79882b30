"""Embeddings (SPEC 4.3): the ViT backbone and its checkpoints, batched inference, aggregation to FOVs and wells."""
