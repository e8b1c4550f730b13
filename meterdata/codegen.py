"""Generate Python messages, gRPC stubs and .pyi type stubs from protos/ (run by `make protos`)."""

from __future__ import annotations

import sys
from importlib import resources

from grpc_tools import protoc

from meterdata import PROJECT_ROOT

PROTO_ROOT = PROJECT_ROOT / "protos"


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "meterdata" / "v1").glob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={PROJECT_ROOT}",
        f"--pyi_out={PROJECT_ROOT}",
        f"--grpc_python_out={PROJECT_ROOT}",
        *protos,
    ]
    code = protoc.main(args)
    if code != 0:
        print("protoc failed", file=sys.stderr)
        return int(code)
    print(f"generated {len(protos)} proto files into meterdata/v1/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
