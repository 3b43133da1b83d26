"""KAN posterior compression (arXiv:2508.18698)."""
