#!/usr/bin/env python3
"""Makes gRPC calls to idreg with Python grpcio (an independent gRPC stack),
over TLS with an optional client certificate, and prints each call's status.

Usage: grpc_calls.py --addr HOST:PORT --ca CA.pem [--cert C --key K] CALLS.json

CALLS.json is a list of {"method": "idreg.v1.Service/Method", "request":
{...protobuf JSON...}, "pad_bytes": N (optional: a request made N bytes
larger through an unknown field, to test size limits)}. Streaming responses
are opened and their status read as soon as it is known. Prints a JSON list
of {"method", "code", "message"} in the same order.

The stubs are generated from proto/ with grpcio-tools at every run, so this
client only ever knows the API from the published .proto files.
"""

import argparse
import importlib
import json
import os
import sys
import tempfile

import grpc
from google.protobuf import json_format, message_factory
from grpc_tools import protoc

PROTO_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "proto")
PROTOS = ["registry", "sessions", "cluster", "enrollment"]


def load_descriptors(out_dir):
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    files = [f"idreg/v1/{name}.proto" for name in PROTOS]
    rc = protoc.main(
        ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out_dir}"] + files
    )
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out_dir)
    services = {}
    for name in PROTOS:
        module = importlib.import_module(f"idreg.v1.{name}_pb2")
        for service in module.DESCRIPTOR.services_by_name.values():
            services[service.full_name] = service
    return services


def pad(serialized, n):
    # Field 1000, length-delimited: unknown to the server, but counted in the
    # message size it must accept or refuse.
    if n <= 0:
        return serialized
    tag = bytes([0xC2, 0x3E])  # (1000 << 3) | 2 as a varint
    length = bytearray()
    v = n
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            length.append(b | 0x80)
        else:
            length.append(b)
            break
    return serialized + tag + bytes(length) + b"x" * n


def call(channel, services, spec):
    path = spec["method"]
    service_name, method_name = path.split("/")
    method = services[service_name].methods_by_name[method_name]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.ParseDict(spec.get("request", {}), request_class())
    padding = spec.get("pad_bytes", 0)
    serialize = lambda m: pad(m.SerializeToString(), padding)
    full = f"/{path}"
    try:
        if method.server_streaming:
            stream = channel.unary_stream(
                full, request_serializer=serialize, response_deserializer=response_class.FromString
            )(request, timeout=10)
            # A refusal is the whole answer; an accepted stream sends its
            # headers and then waits for changes.
            stream.initial_metadata()
            code = stream.code() if stream.done() else grpc.StatusCode.OK
            details = stream.details() if stream.done() else ""
            stream.cancel()
            return {"method": path, "code": code.name, "message": details or ""}
        channel.unary_unary(
            full, request_serializer=serialize, response_deserializer=response_class.FromString
        )(request, timeout=10)
        return {"method": path, "code": "OK", "message": ""}
    except grpc.RpcError as e:
        return {"method": path, "code": e.code().name, "message": e.details() or ""}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("calls")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as out_dir:
        services = load_descriptors(out_dir)
        read = lambda f: open(f, "rb").read() if f else None
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(a.ca), private_key=read(a.key), certificate_chain=read(a.cert)
        )
        with grpc.secure_channel(a.addr, creds) as channel:
            calls = json.load(open(a.calls))
            print(json.dumps([call(channel, services, c) for c in calls]))


if __name__ == "__main__":
    main()
