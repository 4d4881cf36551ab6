//! The generated gRPC code of `proto/rewardpool.proto` (build.rs, protox + tonic-prost-build):
//! messages, the `RewardPoolService` server trait and a client, and the encoded descriptors
//! server reflection serves.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("ours/rewardpool");

/// The encoded `FileDescriptorSet` of `proto/rewardpool.proto`, for server reflection.
#[allow(dead_code)] // served by reflection (the service)
pub(crate) const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rewardpool_descriptor.bin"));
