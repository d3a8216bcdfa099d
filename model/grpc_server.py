"""KServe's gRPC server (``--enable_grpc=true``) with model repository load/unload refused, as over HTTP.

This server serves one model for its whole life; KServe's ``RepositoryModelUnload`` would take it offline
for every client until the pod restarts, and anything that reaches the pod's gRPC port may call it.
"""

from __future__ import annotations

from concurrent import futures

import grpc
import kserve
from grpc import aio
from kserve.logging import logger
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer

REFUSED_METHODS = ("RepositoryModelLoad", "RepositoryModelUnload")
REFUSED_MESSAGE = "loading and unloading models is disabled on this server"


async def _refuse(_request, context: aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, REFUSED_MESSAGE)


class RepositoryGuardInterceptor(aio.ServerInterceptor):
    """Answers repository load/unload with PERMISSION_DENIED before KServe's servicer sees them."""

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.rsplit("/", 1)[-1] in REFUSED_METHODS:
            return grpc.unary_unary_rpc_method_handler(_refuse)
        return await continuation(handler_call_details)


class GuardedGRPCServer(GRPCServer):
    """KServe 0.14.1's ``GRPCServer.start`` (which takes no interceptors) with the repository guard added."""

    async def start(self, max_workers):
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(LoggingInterceptor(), RepositoryGuardInterceptor()),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        listen_addr = f"[::]:{self._port}"
        self._server.add_insecure_port(listen_addr)
        logger.info("Starting gRPC server on %s (model repository load/unload refused)", listen_addr)
        await self._server.start()
        await self._server.wait_for_termination()


class GuardedModelServer(kserve.ModelServer):
    """``kserve.ModelServer`` whose gRPC server, when enabled, is the guarded one."""

    def __init__(self, grpc_options: dict, **kwargs):
        super().__init__(**kwargs)
        if self.enable_grpc:  # KServe builds its gRPC server here and offers no hook to change it
            self._grpc_server = GuardedGRPCServer(
                self.grpc_port, self.dataplane, self.model_repository_extension, kwargs=grpc_options
            )
