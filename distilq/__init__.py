"""distilq's entry points: the `distilq` command and the one launcher of a local stack."""
