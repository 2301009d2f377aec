"""The run loop and its I/O: checkpoint, outputs, dead letters, topics, lag, changelog."""
