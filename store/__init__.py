"""The store: every change of a job's status (submit, claim, renew, finish, cancel, reclaim, requeue) and of
API keys, as plain functions over a SQLAlchemy session."""
