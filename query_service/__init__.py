"""Query service: the read side of meterdata (meters, raw readings, aggregated series) over gRPC."""
