//! Generates the client of the coordinator's gRPC API (the operator reads job progress from it)
//! from the worker's `coordinator.proto`, with the vendored `protoc`; and its server, with every
//! call unimplemented by default, so the operator's tests can stand a coordinator up.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../worker/cluster/proto/coordinator.proto";
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_server(true)
        .generate_default_stubs(true)
        .compile_protos(&[proto], &["../worker/cluster/proto"])?;
    println!("cargo:rerun-if-changed={proto}");
    Ok(())
}
