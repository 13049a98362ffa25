"""distilq: asynchronous DistilBERT inference — settings, queue wiring, clock and the command line."""
