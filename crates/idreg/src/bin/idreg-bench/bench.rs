//! `idreg-bench`: load generators for a running node, bounded in count and time.
//! They print throughput and latency percentiles (table or JSON).

use std::time::{Duration, Instant};

use anyhow::Context;
use idreg_client::pb;
use serde::Serialize;

use crate::cli::{BenchCommand, OutputFormat};
use idreg::proc_sample::{proc_sample, ProcSample};

#[derive(Serialize)]
struct Summary {
    name: String,
    concurrency: usize,
    operations: usize,
    errors: usize,
    seconds: f64,
    ops_per_sec: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    /// Server CPU time per operation, µs (with --server-pid).
    server_cpu_us_per_op: Option<f64>,
    /// Server resident memory after the run, KiB (with --server-pid).
    server_rss_kb: Option<u64>,
}

/// A gRPC error as the command prints it.
pub(crate) fn rpc(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

/// A device whose one PSK has the device id as its identity.
pub(crate) fn psk_device(id: &str, key: &[u8]) -> pb::CreateDeviceRequest {
    let mut req = pb::CreateDeviceRequest {
        id: id.into(),
        ..Default::default()
    };
    req.credentials.push(pb::CredentialInput {
        kind: Some(pb::credential_input::Kind::Psk(pb::PskInput {
            identity: id.as_bytes().to_vec(),
            secret: key.to_vec(),
        })),
    });
    req
}

/// `--fronts`: UDP HOST:PORT device fronts, at least one.
pub(crate) fn parse_fronts(fronts: &[String]) -> anyhow::Result<Vec<std::net::SocketAddr>> {
    let parsed: Vec<std::net::SocketAddr> = fronts
        .iter()
        .map(|f| {
            f.parse()
                .with_context(|| format!("--fronts: {f:?} is not HOST:PORT"))
        })
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!parsed.is_empty(), "--fronts: at least one");
    Ok(parsed)
}

/// Latencies sorted: (count, p50, p90, p99, max).
pub(crate) fn percentiles(mut lat_us: Vec<u64>) -> (usize, u64, u64, u64, u64) {
    lat_us.sort_unstable();
    let pct = |p: f64| {
        lat_us
            .get(((lat_us.len() as f64 * p) as usize).min(lat_us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    (
        lat_us.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        lat_us.last().copied().unwrap_or(0),
    )
}

fn summarize(
    name: &str,
    concurrency: usize,
    (lat_us, errors, elapsed, server): Measured,
) -> Summary {
    let (n, p50_us, p90_us, p99_us, max_us) = percentiles(lat_us);
    let server_cpu_us_per_op = server
        .filter(|_| n > 0)
        .map(|(a, b)| b.cpu.saturating_sub(a.cpu).as_secs_f64() * 1e6 / n as f64);
    Summary {
        name: name.to_owned(),
        concurrency,
        operations: n,
        errors,
        seconds: elapsed.as_secs_f64(),
        ops_per_sec: n as f64 / elapsed.as_secs_f64(),
        p50_us,
        p90_us,
        p99_us,
        max_us,
        server_cpu_us_per_op,
        server_rss_kb: server.map(|(_, b)| b.rss_kb),
    }
}

/// The `i`-th pick of a spread over `0..population` (multiplicative hash),
/// so reads touch the whole key space, not its hot start.
pub(crate) fn spread(i: usize, population: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % population.max(1) as u64
}

/// Latencies (µs), errors, wall time.
pub(crate) type Latencies = (Vec<u64>, usize, Duration);

/// Latencies, errors, wall time, and the server's /proc samples around the run.
type Measured = (Vec<u64>, usize, Duration, Option<(ProcSample, ProcSample)>);

/// CPU and RSS summed over processes; `None` for no processes.
pub(crate) fn sample_all(pids: &[u32]) -> anyhow::Result<Option<ProcSample>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = ProcSample::default();
    for pid in pids {
        let s = proc_sample(*pid)?;
        total.cpu += s.cpu;
        total.rss_kb += s.rss_kb;
    }
    Ok(Some(total))
}

/// Runs a load future, sampling the server processes before and after it.
async fn measured(
    server_pids: &[u32],
    load: impl std::future::Future<Output = anyhow::Result<(Vec<u64>, usize, Duration)>>,
) -> anyhow::Result<Measured> {
    let before = sample_all(server_pids)?;
    let (lat, errors, elapsed) = load.await?;
    let after = sample_all(server_pids)?;
    Ok((lat, errors, elapsed, before.zip(after)))
}

/// Runs `op(client, i)` for i in 0..count over `concurrency` clients (one per
/// worker, made by `connect`), stopping at `max_time`.
async fn drive<C, Conn, ConnFut, F, Fut>(
    connect: Conn,
    concurrency: usize,
    count: usize,
    max_time: Duration,
    op: F,
) -> anyhow::Result<(Vec<u64>, usize, Duration)>
where
    C: Send + 'static,
    Conn: Fn() -> ConnFut,
    ConnFut: std::future::Future<Output = anyhow::Result<C>>,
    F: Fn(C, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (C, bool)> + Send,
{
    let start = Instant::now();
    let deadline = start + max_time;
    // Drawn on stderr only when it is a terminal (never in JSON pipelines or CI logs).
    let bar = indicatif::ProgressBar::new(count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} ops, {per_sec}, eta {eta}")
            .expect("valid template"),
    );
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let mut client = connect().await?;
        let op = op.clone();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            for i in (w..count).step_by(concurrency) {
                if Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                let (c, ok) = op(client, i).await;
                client = c;
                bar.inc(1);
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::with_capacity(count.min(10_000_000));
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.context("bench worker")?;
        all.extend(lat);
        errors += e;
    }
    bar.finish_and_clear();
    Ok((all, errors, start.elapsed()))
}

/// A bar that fills over `seconds` (for time-bounded runs), on a terminal only.
pub(crate) fn time_bar(seconds: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(seconds.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s").expect("valid template"),
    );
    let b = bar.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !b.is_finished() && b.position() < b.length().unwrap_or(0) {
            tick.tick().await;
            b.inc(1);
        }
    });
    bar
}

type RegistryClient =
    idreg_client::pb::device_registry_client::DeviceRegistryClient<tonic::transport::Channel>;
type EtcdClient = idreg_proto::etcd::kv_client::KvClient<tonic::transport::Channel>;

fn registry(
    target: &idreg_client::Target,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<RegistryClient>>>>
{
    let target = target.clone();
    move || {
        let target = target.clone();
        Box::pin(async move { Ok(target.registry().await?) })
    }
}

fn etcd_client(
    target: &idreg_client::Target,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<EtcdClient>>>> {
    let target = target.clone();
    move || {
        let target = target.clone();
        Box::pin(async move { Ok(EtcdClient::new(target.channel().await?)) })
    }
}

/// etcd at `addr`: plaintext, or with idreg's client credentials.
fn etcd_target(idreg: &idreg_client::Target, addr: &str, tls: bool) -> idreg_client::Target {
    match tls {
        true => idreg.at(addr),
        false => idreg_client::Target::plaintext(addr),
    }
}

/// `count` etcd Puts of PREFIX-00000000… keys with `value_size`-byte values.
async fn etcd_puts(
    etcd: &idreg_client::Target,
    concurrency: usize,
    count: usize,
    value_size: usize,
    prefix: String,
    max_seconds: u64,
) -> anyhow::Result<(Vec<u64>, usize, Duration)> {
    let value = vec![b'v'; value_size];
    drive(
        etcd_client(etcd),
        concurrency,
        count,
        Duration::from_secs(max_seconds),
        move |mut c, i| {
            let req = idreg_proto::etcd::PutRequest {
                key: format!("{prefix}-{i:08}").into_bytes(),
                value: value.clone(),
                ..Default::default()
            };
            async move {
                let ok = c.put(req).await.is_ok();
                (c, ok)
            }
        },
    )
    .await
}

fn print(output: OutputFormat, s: &Summary) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(s)?),
        OutputFormat::Table => {
            println!(
                "{:<10} conc={:<4} ops={:<8} errors={:<5} {:>9.0} ops/s  p50={}µs p90={}µs p99={}µs max={}µs",
                s.name, s.concurrency, s.operations, s.errors, s.ops_per_sec, s.p50_us, s.p90_us, s.p99_us, s.max_us
            );
            if let (Some(cpu), Some(rss)) = (s.server_cpu_us_per_op, s.server_rss_kb) {
                println!(
                    "           server: {cpu:.1} µs CPU/op, RSS {} MiB",
                    rss / 1024
                );
            }
        }
    }
    Ok(())
}

/// The benches that run in process, with the server's own code and no
/// server.
pub async fn run_local(output: OutputFormat, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::RlSize { count } => crate::bench_rl::run(count, output),
        BenchCommand::FwReport {
            devices,
            queries,
            data_dir,
        } => crate::bench_report::run(&data_dir, devices, queries, output).await,
        _ => unreachable!("main sends only in-process benches here"),
    }
}

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: BenchCommand,
) -> anyhow::Result<()> {
    match command {
        BenchCommand::Handshake {
            device,
            concurrency,
            duration,
        } => {
            let bar = time_bar(duration);
            let summary = crate::bench_device::handshake(device, concurrency, duration).await?;
            bar.finish_and_clear();
            crate::bench_device::print(output, &summary)
        }
        BenchCommand::Coap {
            device,
            sessions,
            concurrency,
            duration,
            source_block,
            start_file,
        } => {
            let bar = time_bar(duration);
            let summary = crate::bench_device::coap(
                device,
                crate::bench_device::CoapLoad {
                    sessions,
                    concurrency,
                    duration,
                    source_block,
                    start_file,
                },
            )
            .await?;
            bar.finish_and_clear();
            crate::bench_device::print(output, &summary)
        }
        BenchCommand::Register {
            concurrency,
            count,
            prefix,
            max_seconds,
            server_pid,
        } => {
            let prefix = prefix.unwrap_or_else(|| format!("bench-{}", std::process::id()));
            let m = measured(
                &server_pid,
                drive(
                    registry(target),
                    concurrency,
                    count,
                    Duration::from_secs(max_seconds),
                    move |mut c, i| {
                        let id = format!("{prefix}-{i:08}");
                        async move {
                            let mut req = psk_device(&id, b"bench-secret-0123456789");
                            req.labels.insert("bench".into(), "register".into());
                            let ok = c.create_device(req).await.is_ok();
                            (c, ok)
                        }
                    },
                ),
            )
            .await?;
            print(output, &summarize("register", concurrency, m))
        }
        BenchCommand::Get {
            concurrency,
            count,
            prefix,
            population,
            max_seconds,
            server_pid,
        } => {
            let m = measured(
                &server_pid,
                drive(
                    registry(target),
                    concurrency,
                    count,
                    Duration::from_secs(max_seconds),
                    move |mut c, i| {
                        let n = spread(i, population);
                        let id = format!("{prefix}-{n:08}");
                        async move {
                            let ok = c
                                .get_device(pb::GetDeviceRequest {
                                    id,
                                    ..Default::default()
                                })
                                .await
                                .is_ok();
                            (c, ok)
                        }
                    },
                ),
            )
            .await?;
            print(output, &summarize("get", concurrency, m))
        }
        BenchCommand::Import {
            count,
            prefix,
            streams,
            max_seconds,
            server_pid,
        } => {
            crate::bench_import::import(
                target,
                &prefix,
                count,
                streams,
                Duration::from_secs(max_seconds),
                &server_pid,
                output,
            )
            .await
        }
        BenchCommand::Lookup {
            data_dir,
            kek_file,
            prefix,
            population,
            count,
        } => {
            for (name, m) in
                crate::bench_import::lookup(&data_dir, &kek_file, &prefix, population, count)?
            {
                print(output, &summarize(name, 1, (m.0, m.1, m.2, None)))?;
            }
            Ok(())
        }
        BenchCommand::Revoke {
            fronts,
            count,
            max_seconds,
        } => {
            let m = measured(
                &[],
                crate::bench_revoke::run(target, &fronts, count, Duration::from_secs(max_seconds)),
            )
            .await?;
            print(output, &summarize("revoke", fronts.len(), m))
        }
        BenchCommand::Firmware {
            fronts,
            devices,
            image_kib,
            szx,
            connect_concurrency,
            server_pid,
            peer,
            peer_path,
            peer_key,
            peer_pid,
            writers,
            write_seconds,
            upload_mib,
        } => {
            let load = crate::bench_firmware::FirmwareLoad {
                fronts,
                devices,
                image_kib,
                szx,
                connect_concurrency,
                server_pids: server_pid,
                peer,
                peer_path,
                peer_key,
                peer_pid,
                writers,
                write_seconds,
                upload_mib,
            };
            let summary = crate::bench_firmware::run(target, load).await?;
            crate::bench_firmware::print(output, &summary)
        }
        BenchCommand::RlSize { .. } | BenchCommand::FwReport { .. } => {
            unreachable!("in process: run_local")
        }
        BenchCommand::Observe {
            fronts,
            observers,
            rounds,
            connect_concurrency,
            server_pid,
        } => {
            let load = crate::bench_observe::ObserveLoad {
                fronts,
                observers,
                rounds,
                connect_concurrency,
                server_pids: server_pid,
            };
            let summary = crate::bench_observe::run(target, load).await?;
            crate::bench_observe::print(output, &summary)
        }
        BenchCommand::Enroll {
            fronts,
            count,
            concurrency,
            max_seconds,
            server_pid,
        } => {
            let load = crate::bench_enroll::EnrollLoad {
                fronts,
                count,
                concurrency,
                server_pids: server_pid,
                max_seconds,
            };
            let summary = crate::bench_enroll::run(target, load).await?;
            crate::bench_enroll::print(output, &summary)
        }
        BenchCommand::EtcdPut {
            etcd,
            etcd_tls,
            concurrency,
            count,
            value_size,
            max_seconds,
            server_pid,
        } => {
            let prefix = format!("bench-{}", std::process::id());
            let etcd = etcd_target(target, &etcd, etcd_tls);
            let m = measured(
                &server_pid,
                etcd_puts(&etcd, concurrency, count, value_size, prefix, max_seconds),
            )
            .await?;
            print(output, &summarize("etcd-put", concurrency, m))
        }
        BenchCommand::EtcdFill {
            etcd,
            etcd_tls,
            count,
            value_size,
            prefix,
        } => {
            let etcd = etcd_target(target, &etcd, etcd_tls);
            let m = measured(&[], etcd_puts(&etcd, 64, count, value_size, prefix, 3600)).await?;
            print(output, &summarize("etcd-fill", 64, m))
        }
        BenchCommand::EtcdGet {
            etcd,
            etcd_tls,
            concurrency,
            count,
            prefix,
            population,
            max_seconds,
            server_pid,
        } => {
            let m = measured(
                &server_pid,
                drive(
                    etcd_client(&etcd_target(target, &etcd, etcd_tls)),
                    concurrency,
                    count,
                    Duration::from_secs(max_seconds),
                    move |mut c, i| {
                        let n = spread(i, population);
                        let req = idreg_proto::etcd::RangeRequest {
                            key: format!("{prefix}-{n:08}").into_bytes(),
                            serializable: true,
                            ..Default::default()
                        };
                        async move {
                            let ok =
                                matches!(c.range(req).await, Ok(r) if r.get_ref().kvs.len() == 1);
                            (c, ok)
                        }
                    },
                ),
            )
            .await?;
            print(output, &summarize("etcd-get", concurrency, m))
        }
    }
}
