"""Generic data loading: datasets with counted skips, JSON/JSONL rows and resumable shuffled streams."""
