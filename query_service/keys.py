"""ApiKeyService: verifies API keys for the gateway, which holds no database connection of its own.

The gateway is the one process facing the internet; keeping DATABASE_URL out of it means a break-in
there does not hand over the database. This process already owns the read SQL and a connection pool,
so it answers the gateway's one question (which tenant and scope does this key have?) with one
primary-key lookup (`meterdata.apikeys.verify_key`). The request carries the secret: it is never
logged, and the refusal does not say whether the key was unknown, revoked or wrong.
"""

from __future__ import annotations

import asyncio

import grpc
from sqlalchemy import Engine

from meterdata.apikeys import verify_key
from meterdata.errors import Unauthenticated
from meterdata.v1 import auth_pb2, auth_pb2_grpc

KEYS_SERVICE_NAME = "meterdata.v1.ApiKeyService"
SCOPE_ENUM = {
    "read": auth_pb2.API_KEY_SCOPE_READ,
    "ingest": auth_pb2.API_KEY_SCOPE_INGEST,
    "admin": auth_pb2.API_KEY_SCOPE_ADMIN,
}
INVALID_KEY = "the API key is not valid (unknown, revoked or malformed)"


class ApiKeyServicer(auth_pb2_grpc.ApiKeyServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def VerifyApiKey(
        self, request: auth_pb2.VerifyApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ApiKeyPrincipal:
        principal = await asyncio.to_thread(verify_key, self.engine, request.key)
        if principal is None:
            raise Unauthenticated(INVALID_KEY)
        return auth_pb2.ApiKeyPrincipal(
            key_id=principal.key_id, tenant=principal.tenant, scope=SCOPE_ENUM[principal.scope]
        )
