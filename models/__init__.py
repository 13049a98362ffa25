"""What the API and the worker share: the SQL tables, the request schemas and the job's public JSON."""
