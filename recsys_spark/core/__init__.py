"""The Spark-free core: everything that scores, parses or loads, with numpy, pyarrow and scipy only.

* :mod:`.registry` -- every recipe declared once (settings, model, estimator, request kind, capabilities);
* :mod:`.settings` -- the recipes' settings with their defaults;
* :mod:`.models` -- fitted models: numpy state that scores blocks of users or items, saved as Arrow tables;
* :mod:`.kernels` -- the hot loops: the ALS solver, top-k selection, the block scorer, JSON lines;
* :mod:`.filters` -- the filter language: parse, check, bind, compile to masks and per-user lists, apply;
* :mod:`.requests` -- a batch or real-time request, checked;
* :mod:`.store` -- solution versions: write, list, load (through Spark's file system or pyarrow's).

Nothing here imports pyspark (a test reads the imports), so a process without Spark (the real-time
server, ``validate``, a CI lint job) loads a trained version and answers requests with this package alone.
"""
