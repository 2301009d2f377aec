"""The runtime: the loop (loop), what it is given (ports, built in wiring), processing
(process), sealing and committing (checkpoint), replay to seal marks (replay),
backpressure, and the I/O beside it: outputs, dead letters, changelog, topics, lag."""
