"""Business filters in the managed service's filter language: parse, check against the schemas, bind
per-request parameter values, compile against a catalog and its metadata, and apply to score blocks
(`parse_filter`, `check_filter`, `bind`, `compile_plan`, `user_lists`, `apply_filter`). No Spark here: the
batch job runs these inside its tasks, the real-time server in its process."""

from recsys_spark.core.filters.binding import bind, parse_filter_values
from recsys_spark.core.filters.plan import FilterPlan, RowFilters, apply_filter, compile_plan, user_lists
from recsys_spark.core.filters.rules import check_filter, filter_fields
from recsys_spark.core.filters.syntax import Filter, FilterError, parse_filter

__all__ = ["Filter", "FilterError", "FilterPlan", "RowFilters", "apply_filter", "bind", "check_filter",
           "compile_plan", "filter_fields", "parse_filter", "parse_filter_values", "user_lists"]
