"""The command line: the one composition root that knows both the gateway and the simulator."""
