"""Model sources: hub ids, local folders, and the built-in tiny model."""
