//! Compiles the gRPC API (`proto/rewardpool.proto`) for the binary side, and the Go
//! service's contract alone (`tests/it/proto/go_contract.proto`, a client only) for the
//! compatibility test. Protobuf is compiled in pure Rust (protox): no system `protoc`.
//!
//! Without the `cli` feature (a library user with `default-features = false`) this does
//! nothing and pulls in no protobuf tooling.

fn main() {
    #[cfg(feature = "cli")]
    if let Err(e) = service::compile() {
        // A build script reports by panicking; this is the build's own input, not a user's.
        panic!("compiling the protobuf API: {e}");
    }
}

#[cfg(feature = "cli")]
mod service {
    use std::path::PathBuf;

    type BoxError = Box<dyn std::error::Error>;

    pub(super) fn compile() -> Result<(), BoxError> {
        let out = PathBuf::from(std::env::var("OUT_DIR")?);
        for file in ["proto/rewardpool.proto", "tests/it/proto/go_contract.proto"] {
            println!("cargo:rerun-if-changed={file}");
        }

        // Ours: server and client, plus the encoded descriptors for server reflection.
        let fds = protox::compile(["rewardpool.proto"], ["proto"])?;
        std::fs::write(out.join("rewardpool_descriptor.bin"), prost_encode(&fds))?;
        let ours = out.join("ours");
        std::fs::create_dir_all(&ours)?;
        tonic_prost_build::configure()
            .out_dir(&ours)
            .build_server(true)
            .build_client(true)
            .compile_fds(fds)?;

        // The Go contract alone: a client, for tests/it (the compatibility test).
        let fds = protox::compile(["go_contract.proto"], ["tests/it/proto"])?;
        let go = out.join("go_contract");
        std::fs::create_dir_all(&go)?;
        tonic_prost_build::configure()
            .out_dir(&go)
            .build_server(false)
            .build_client(true)
            .compile_fds(fds)?;
        Ok(())
    }

    fn prost_encode(fds: &tonic_prost_build::FileDescriptorSet) -> Vec<u8> {
        use protox::prost::Message;
        fds.encode_to_vec()
    }
}
