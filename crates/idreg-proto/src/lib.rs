//! Code generated from `proto/` by tonic-prost-build, and nothing else.

pub mod v1 {
    tonic::include_proto!("idreg.v1");
}

/// A client for etcd v3's KV API (a subset), for peer benchmarks.
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

/// The encoded descriptor set of every idreg service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("idreg_descriptor");
