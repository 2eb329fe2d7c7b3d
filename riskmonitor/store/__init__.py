"""The store: the database's schema and revisions (schema), its queries (db), and files written whole (storage)."""
