"""Batch scoring: Spark DataFrames of users in, top-k recommendations out, one vectorised kernel per task."""
