"""What goes out: commands, batches, the Journey client and delivery."""
