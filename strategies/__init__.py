"""Strategy records, the Chroma-backed strategy library, retrieval and audit operations."""
