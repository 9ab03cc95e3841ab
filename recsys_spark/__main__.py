import sys

from recsys_spark.cli import main

sys.exit(main())
