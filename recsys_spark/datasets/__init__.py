"""The data layer: Delta tables of a dataset group, CSV import, incremental ingestion, deletion, export."""
