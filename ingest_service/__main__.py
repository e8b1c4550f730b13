import sys

from ingest_service.cli import main

sys.exit(main())
