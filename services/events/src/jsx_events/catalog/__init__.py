"""Activity types: the built-in vocabulary and the region plugins' own types."""
