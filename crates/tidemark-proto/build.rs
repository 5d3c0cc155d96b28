//! Compiles `proto/` (remote write 1.0/2.0, remote read) into Rust with
//! prost-build, using protox as the parser so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const FILES: [&str; 3] = [
        "proto/prometheus/types.proto",
        "proto/prometheus/remote.proto",
        "proto/io/prometheus/write/v2/types.proto",
    ];
    for f in FILES {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(FILES, ["proto"])?;
    prost_build::Config::new()
        // `bytes` fields become `bytes::Bytes` slices of the request buffer:
        // label strings and symbols are not copied while decoding.
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
