//! Generates the coordinator's gRPC client and server from `proto/coordinator.proto`, with the
//! vendored `protoc` so a build needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().compile_protos(&["proto/coordinator.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/coordinator.proto");
    Ok(())
}
