"""REST gateway: the frontend's JSON/CSV API over the gRPC services (no business logic here)."""
