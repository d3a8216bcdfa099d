"""gRPC: off with the image's command; when turned on (--enable_grpc=true), it serves inference and refuses
model repository load/unload as HTTP does, so the model stays served."""

from __future__ import annotations

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tests.model.conftest import MODEL_NAME
from tests.model.server_process import ServerProcess


def grpc_port(server: ServerProcess) -> int:
    """The last --grpc_port of the server's command (the local one, after the image's CMD)."""
    return int([arg for arg in server.command if arg.startswith("--grpc_port=")][-1].partition("=")[2])


@pytest.fixture
def grpc_server(tiny_model_dir, tmp_path):
    server = ServerProcess(tiny_model_dir, tmp_path / "server.log", "--enable_grpc=true")
    try:
        server.wait_ready(MODEL_NAME)
        yield server
    finally:
        server.stop()


def stub_for(server: ServerProcess) -> tuple[grpc.Channel, GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port(server)}")
    return channel, GRPCInferenceServiceStub(channel)


def test_the_image_command_serves_no_grpc(server):
    channel, stub = stub_for(server)
    with channel, pytest.raises(grpc.RpcError) as error:
        stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_refuses_repository_unload_and_load_and_still_serves(grpc_server):
    channel, stub = stub_for(grpc_server)
    with channel:

        def live() -> bool:
            try:
                return stub.ServerLive(pb.ServerLiveRequest(), timeout=2).live
            except grpc.RpcError:
                return False

        grpc_server.wait_until(live, 60, "to serve gRPC")
        for call, request in (
            (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name=MODEL_NAME)),
            (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=MODEL_NAME)),
        ):
            with pytest.raises(grpc.RpcError) as error:
                call(request, timeout=10)
            assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "disabled" in error.value.details()
        assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=10).ready
        assert grpc_server.get(f"/v1/models/{MODEL_NAME}").status_code == 200
        text = pb.ModelInferRequest.InferInputTensor(
            name="text",
            datatype="BYTES",
            shape=[1],
            contents=pb.InferTensorContents(bytes_contents=[b"hello"]),
        )
        answer = stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL_NAME, inputs=[text]), timeout=30)
        assert [output.name for output in answer.outputs] == ["label", "score"]
