//! Micro-benchmarks of the hot paths (criterion):
//! - the DTLS handshake's registry lookups: PSK identity -> device -> unsealed
//!   PSK, and key fingerprint -> device, with 100 000 devices in RocksDB;
//! - the CoAP endpoint handling one GET /id (parse, route, serialise, dedup);
//! - the state machine applying one raft entry of 512 CreateDevice proposals,
//!   and its overlay alone (owner lookups and records for 512 and 44 creates);
//! - reading that entry back: decoded from its stored bytes (RocksDB's path)
//!   or cloned from the log's in-memory tail (a shared `ProposalBatch`).
//!
//!   cargo bench --bench hot_paths

use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use idreg_coap::authenticator::Authenticator;
use idreg_coap::endpoint::CoapEndpoint;
use idreg_coap::resources::ResourceContext;
use idreg_core::credential::public_key_from_spki_pem;
use idreg_core::{
    Command, Credential, DeviceId, Kek, Labels, NewDevice, Proposal, ProposalBatch, TenantId,
};
use idreg_store::{Store, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use p256::pkcs8::{EncodePublicKey, LineEnding};

const DEVICES: usize = 100_000;
const BATCH: usize = 512;
const PSK: &[u8] = b"micro-bench-secret-0123";

fn key_pem(i: usize) -> String {
    let mut bytes = [0x22u8; 32];
    bytes[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    p256::SecretKey::from_slice(&bytes)
        .unwrap()
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

/// Device `i`: a PSK for even i, a P-256 key for odd i.
fn create(kek: &Kek, prefix: &str, i: usize, with_keys: bool) -> Proposal {
    let id = DeviceId::parse("id", &format!("{prefix}-{i:07}")).unwrap();
    let credential = if i.is_multiple_of(2) || !with_keys {
        Credential::Psk {
            identity: id.as_str().as_bytes().to_vec(),
            secret: kek.seal(PSK, id.as_str().as_bytes()),
        }
    } else {
        Credential::PublicKey(public_key_from_spki_pem("k", &key_pem(i)).unwrap())
    };
    Proposal {
        at_ms: 1,
        by: idreg_core::Author::new("tester", idreg_core::Role::Operator, 1),
        command: Command::Create(NewDevice {
            id,
            tenant: TenantId::default_tenant(),
            labels: Labels::default(),
            gateway: None,
            credentials: vec![credential],
        }),
    }
}

fn entry(index: u64, proposals: Vec<Proposal>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(ProposalBatch::from(proposals)),
    }
}

struct Ctx;

impl ResourceContext for Ctx {
    fn device_id(&self) -> &str {
        "sensor-1"
    }
    fn credential(&self) -> &'static str {
        "psk"
    }
    fn status(&self) -> Option<&'static str> {
        Some("active")
    }
    fn revocation_list(&self) -> (u64, u64) {
        (3, 3)
    }
    fn device_ca_certificate(&self) -> Option<Vec<u8>> {
        None
    }
}

fn hot_paths(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kek = Kek::from_bytes(&[7u8; 32]);
    let store = Store::open(dir.path(), &kek).unwrap();
    let mut sm = rt.block_on(async { store.state_machine().unwrap() });
    let mut index = 0;
    for chunk in (0..DEVICES).collect::<Vec<_>>().chunks(BATCH) {
        index += 1;
        let proposals = chunk.iter().map(|i| create(&kek, "d", *i, true)).collect();
        rt.block_on(sm.apply([entry(index, proposals)])).unwrap();
    }
    let auth = Authenticator::new(store.reader(), kek.clone());
    let reader = store.reader();
    let fingerprints: Vec<_> = (1..DEVICES)
        .step_by(2)
        .take(1000)
        .map(|i| {
            public_key_from_spki_pem("k", &key_pem(i))
                .unwrap()
                .fingerprint
        })
        .collect();

    let mut n = 0usize;
    c.bench_function("psk lookup + unseal (100k devices)", |b| {
        b.iter(|| {
            n = (n + 7919) % (DEVICES / 2);
            let id = format!("d-{:07}", n * 2);
            let (_, key, _) = auth.psk(id.as_bytes()).unwrap();
            assert_eq!(key.as_slice(), PSK);
        })
    });
    let mut k = 0usize;
    c.bench_function("fingerprint lookup (100k devices)", |b| {
        b.iter(|| {
            k = (k + 1) % fingerprints.len();
            assert!(reader.by_fingerprint(&fingerprints[k]).unwrap().is_some());
        })
    });

    let mut ep = CoapEndpoint::new(1);
    let mut mid = 0u16;
    c.bench_function("coap GET /id: parse, route, serialise", |b| {
        b.iter_batched(
            || {
                mid = mid.wrapping_add(1);
                let mut p = Packet::new();
                p.header.set_type(MessageType::Confirmable);
                p.header.code = MessageClass::Request(RequestType::Get);
                p.header.message_id = mid;
                p.set_token(vec![0xAB, 0xCD]);
                p.add_option(CoapOption::UriPath, b"id".to_vec());
                (p.to_bytes().unwrap(), mid as u64)
            },
            |(datagram, now)| ep.handle(&datagram, now, &Ctx).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let mut next = DEVICES;
    let mut group = c.benchmark_group("state machine");
    group.sample_size(20);
    group.bench_function("apply one entry of 512 creates", |b| {
        b.iter_batched(
            || {
                index += 1;
                let proposals = (next..next + BATCH)
                    .map(|i| create(&kek, "d", i, false))
                    .collect();
                next += BATCH;
                entry(index, proposals)
            },
            |e| rt.block_on(sm.apply([e])).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // What apply's overlay costs a batch of creates on its own: each
    // proposal asks who owns its PSK identity, then records its device.
    // The changes come from applying the creates to a scratch registry;
    // the overlay's base stays empty, as a batch of new ids finds it.
    let base = idreg_core::mem::MemRegistry::default();
    let mut scratch = idreg_core::mem::MemRegistry::default();
    let changes: Vec<idreg_core::Change> = (0..BATCH)
        .map(|i| scratch.execute(&create(&kek, "o", i, false)).unwrap())
        .collect();
    // 512: a bulk import's entry; 44: a group commit of 100 clients.
    for n in [BATCH, 44] {
        let name = format!("overlay: {n} creates' PSK owner checks and records");
        group.bench_function(name, |b| {
            b.iter(|| {
                use idreg_core::RegistryView;
                let mut overlay = idreg_core::Overlay::new(&base);
                for change in &changes[..n] {
                    let d = change.after.as_ref().unwrap();
                    let identity = d.psk_identities().next().unwrap();
                    assert!(overlay.psk_owner(identity).unwrap().is_none());
                    overlay.record(change);
                }
            })
        });
    }
    let sample = entry(1, (0..BATCH).map(|i| create(&kek, "e", i, false)).collect());
    let bytes = idreg_store::codec::encode(&sample);
    group.bench_function("decode one log entry of 512 creates", |b| {
        b.iter(|| idreg_store::codec::decode::<Entry<TypeConfig>>(&bytes).unwrap())
    });
    group.bench_function("clone one log entry of 512 creates", |b| {
        b.iter(|| sample.clone())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = hot_paths
}
criterion_main!(benches);
