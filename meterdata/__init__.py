"""Shared foundation of the meterdata services: settings, database, gRPC bootstrap, local runner."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
