"""Solutions: the snapshot a solution trains on (:mod:`.snapshot`), the version store on Spark's file system
(:mod:`.store`) and the orchestration that trains and re-evaluates versions (:mod:`.train`)."""
