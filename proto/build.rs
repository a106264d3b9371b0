//! Generates the tonic/prost code for `proto/*.proto` with the protoc shipped by
//! `protoc-bin-vendored`, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/node.proto", "proto/automation.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // Served by the node with gRPC server reflection.
        .file_descriptor_set_path(out_dir.join("avs_descriptor.bin"))
        .compile_with_config(config, &protos, &["proto"])?;
    Ok(())
}
