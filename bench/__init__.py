"""`make bench` (`python -m bench.run`): distilq's engine and service against what users would otherwise run,
measured side by side on a model of distilbert-base's exact shape."""
