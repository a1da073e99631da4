"""PaddleSlim compression (placeholder while being written)."""
