"""The public contract: request bodies, the job's JSON, response bodies, and the token rules the API and the
worker must apply alike."""
