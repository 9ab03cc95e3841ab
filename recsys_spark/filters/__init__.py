"""Business filters in the managed service's filter language: parse, check against the schemas, bind
per-request parameter values (`parse_filter`, `check_filter`, `bind`)."""

from recsys_spark.filters.binding import bind, parse_filter_values
from recsys_spark.filters.rules import check_filter
from recsys_spark.filters.syntax import Filter, FilterError, parse_filter

__all__ = ["Filter", "FilterError", "bind", "check_filter", "parse_filter", "parse_filter_values"]
