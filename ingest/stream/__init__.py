"""The stream core: per-device session (counters, gaps, clock, detector) and the gateway runner."""
