"""The data model: the SQL tables and the database engine and sessions."""
