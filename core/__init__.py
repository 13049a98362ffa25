"""Foundation under every other package: settings, the clock, the task names, queue wiring, metrics and logs."""
