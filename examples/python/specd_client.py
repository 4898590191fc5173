"""Calling specd's gRPC API from Python with Debian's grpcio and protobuf.

Stubs come from gen.sh (protoc on the committed protos). docs/clients.md walks
through it; test_example.py runs every function here against a real specd up.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory  # noqa: E402

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from specd.v1 import generation_pb2 as pb  # noqa: E402
from specd.v1 import generation_pb2_grpc as pb_grpc  # noqa: E402


def connect(addr):
    """A GenerationService stub on a plaintext channel to addr (host:port)."""
    return pb_grpc.GenerationServiceStub(grpc.insecure_channel(addr))


def key_metadata(key):
    """Call metadata for a router started with --api-keys."""
    return (("authorization", "Bearer " + key),) if key else ()


def generate(stub, req, key=None, timeout=None, on_chunk=None):
    """Streams the completion of req and returns (token_ids, text, final).

    The returned call object, not this function, is what cancels: see
    generate_call. timeout is the call's deadline in seconds."""
    call = stub.Generate(req, metadata=key_metadata(key), timeout=timeout)
    ids, text, final = [], [], None
    for msg in call:
        if msg.WhichOneof("event") == "chunk":
            ids.extend(msg.chunk.token_ids)
            text.append(msg.chunk.text)
            if on_chunk is not None:
                on_chunk(call, msg.chunk)
        else:
            final = msg.final
    return ids, "".join(text), final


def _rpc_classes():
    """google.rpc.Status, RetryInfo and BadRequest, built from their field
    numbers: Debian packages no googleapis-common-protos (PyPI's
    grpcio-status reads the same trailer with rpc_status.from_call)."""
    pool = descriptor_pool.DescriptorPool()
    for dep in (any_pb2, duration_pb2):
        pool.AddSerializedFile(dep.DESCRIPTOR.serialized_pb)
    f = descriptor_pb2.FileDescriptorProto(
        name="specd_example/google_rpc.proto", package="google.rpc", syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/duration.proto"])
    F = descriptor_pb2.FieldDescriptorProto
    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def msg(name, *fields, nested=()):
        m = descriptor_pb2.DescriptorProto(name=name, nested_type=list(nested))
        for number, (fname, label, ftype, type_name) in enumerate(fields, start=1):
            fd = m.field.add(name=fname, number=number, label=label, type=ftype)
            if type_name:
                fd.type_name = type_name
        return m

    f.message_type.extend([
        msg("Status", ("code", one, F.TYPE_INT32, ""), ("message", one, F.TYPE_STRING, ""),
            ("details", many, F.TYPE_MESSAGE, ".google.protobuf.Any")),
        msg("RetryInfo", ("retry_delay", one, F.TYPE_MESSAGE, ".google.protobuf.Duration")),
        msg("BadRequest", ("field_violations", many, F.TYPE_MESSAGE, ".google.rpc.BadRequest.FieldViolation"),
            nested=[msg("FieldViolation", ("field", one, F.TYPE_STRING, ""), ("description", one, F.TYPE_STRING, ""))]),
    ])
    pool.AddSerializedFile(f.SerializeToString())
    factory = message_factory.MessageFactory(pool)
    return {n: factory.GetPrototype(pool.FindMessageTypeByName("google.rpc." + n))
            for n in ("Status", "RetryInfo", "BadRequest")}


RPC = _rpc_classes()


def status_details(err):
    """The details of the google.rpc.Status in a failed call's
    grpc-status-details-bin trailer, as {type name: message}."""
    for k, v in err.trailing_metadata() or ():
        if k == "grpc-status-details-bin":
            st = RPC["Status"].FromString(v)
            out = {}
            for d in st.details:
                name = d.type_url.rsplit("/", 1)[-1]
                if name.startswith("google.rpc.") and name[len("google.rpc."):] in RPC:
                    out[name] = RPC[name[len("google.rpc."):]].FromString(d.value)
            return out
    return {}


def retry_delay(err):
    """Seconds RESOURCE_EXHAUSTED's RetryInfo says to wait; None without one
    (a request larger than the server's message limit: do not retry it)."""
    info = status_details(err).get("google.rpc.RetryInfo")
    if info is None:
        return None
    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9


def health(addr, service=""):
    """grpc.health.v1 status name of service ("" for the whole server)."""
    with grpc.insecure_channel(addr) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
