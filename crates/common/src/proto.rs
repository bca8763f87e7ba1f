//! Generated protobuf and gRPC types (see `proto/`).

pub mod events {
    tonic::include_proto!("shortener.events.v1");
}

pub mod analytics {
    tonic::include_proto!("shortener.analytics.v1");
}

/// Encoded `FileDescriptorSet` of every proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("shortener_descriptor");
