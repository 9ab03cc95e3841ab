"""The real-time half: the managed service's runtime and event APIs served from solution versions without
Spark (`recsys-spark serve`). :mod:`.state` holds what the server knows (versions, histories, metadata) and
answers with the core's scorer, :mod:`.api` the service's operations, :mod:`.app` the HTTP side,
:mod:`.landing` the durable event files `ingest` takes, :mod:`.auth` SigV4 signatures, :mod:`.tables` the
Delta tables read without Spark."""
