"""What users run beside the service: demo, bench, traffic generator, Journey emulator,
embedded broker. The runtime never imports this package (a test checks it)."""
