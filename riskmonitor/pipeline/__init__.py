"""The pipeline: one tick (look, ingest, decide, commit, report) and deployment by hand, composed from the domain."""
