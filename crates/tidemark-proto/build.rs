//! Compiles `proto/` (remote write 1.0/2.0, remote read, OTLP metrics) into
//! Rust with prost-build, using protox as the parser so no system `protoc`
//! is needed; the OTLP types also get serde impls of the protobuf JSON
//! mapping (pbjson-build), for OTLP/HTTP's JSON bodies.

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

    // OTLP metrics (opentelemetry-proto v1.11), with JSON.
    const OTLP: [&str; 1] =
        ["proto/opentelemetry/proto/collector/metrics/v1/metrics_service.proto"];
    println!("cargo:rerun-if-changed=proto/opentelemetry");
    let otlp = protox::compile(OTLP, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let set = prost::Message::encode_to_vec(&otlp);
    prost_build::Config::new().compile_fds(otlp)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .out_dir(&out)
        .build(&[".opentelemetry"])?;
    Ok(())
}
