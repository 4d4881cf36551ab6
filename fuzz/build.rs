//! Compiles the service's API (`../proto/rewardpool.proto`) to its messages alone (prost,
//! no gRPC code) for the `request` target, in pure Rust (protox: no system `protoc`).

fn main() {
    println!("cargo:rerun-if-changed=../proto/rewardpool.proto");
    let fds = protox::compile(["rewardpool.proto"], ["../proto"])
        .unwrap_or_else(|e| panic!("compiling ../proto/rewardpool.proto: {e}"));
    prost_build::Config::new()
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("generating the messages of ../proto/rewardpool.proto: {e}"));
}
