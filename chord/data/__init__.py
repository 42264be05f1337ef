"""Data: dataset loading with counted skips, resumable streams, and the built-in tiny task."""
