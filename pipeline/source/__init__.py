"""What comes in: schemas, decoding, the vocabulary (normalise), the producers' partitioner."""
