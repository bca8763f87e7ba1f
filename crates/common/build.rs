use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps the build independent of the host's packages.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { env::set_var("PROTOC", protoc) };

    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let include = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let files = [
        proto_dir.join("click_event.proto"),
        proto_dir.join("analytics.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    // db::MIGRATOR embeds this directory: a new migration must rebuild the crate (listing
    // the proto files above turned off cargo's default of watching the whole package).
    println!("cargo:rerun-if-changed=../../migrations");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("shortener_descriptor.bin"))
        .compile_protos(&files, &[proto_dir, include])?;
    Ok(())
}
