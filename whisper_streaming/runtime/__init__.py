"""The runtime every door shares: admission, session drivers, counters and status, sinks, graceful shutdown."""
