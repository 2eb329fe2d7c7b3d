"""The data: one validator for rows, pandas' row hashes, the data sets, ingestion of new files, and column statistics."""
