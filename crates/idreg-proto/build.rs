//! Generates the gRPC code from ../../proto, plus the descriptor set that server
//! reflection serves (so `grpcurl list` works with no .proto at hand).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "../../proto/idreg/v1/registry.proto",
        "../../proto/idreg/v1/sessions.proto",
        "../../proto/idreg/v1/cluster.proto",
        "../../proto/idreg/v1/raft.proto",
        "../../proto/idreg/v1/enrollment.proto",
        "../../proto/idreg/v1/firmware.proto",
    ];
    // The etcd KV subset is a client only (benchmarks drive etcd with it) and
    // stays out of the descriptor set idreg serves by reflection.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["../../proto/peers/etcd_kv.proto"], &["../../proto"])?;
    println!("cargo:rerun-if-changed=../../proto/peers/etcd_kv.proto");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("idreg_descriptor.bin"))
        .compile_protos(&protos, &["../../proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
