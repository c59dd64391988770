//! Firmware in RocksDB: a release staged chunk by chunk and read back by
//! range, the report index and its counts kept exact through replaced
//! reports and deleted devices (within one entry too), and all of it
//! carried by a snapshot to another store.

use idreg_core::firmware_manifest::Manifest;
use idreg_core::firmware_release::{Attempt, AttemptState, ReleaseId, CHUNK_SIZE};
use idreg_core::firmware_version::FirmwareVersion;
use idreg_core::labels::CLASS_LABEL;
mod common;

use common::{entry, id, snapshot_into};
use idreg_core::{
    Command, DeviceClass, FirmwareSigner, Kek, Labels, NewDevice, SignerName, TenantId,
};
use idreg_store::{RegistryReader, Store, VersionCount};
use openraft::storage::RaftStateMachine;
use sha2::{Digest, Sha256};

fn v(s: &str) -> FirmwareVersion {
    FirmwareVersion::parse("v", s).unwrap()
}

fn report(device: &str, running: &str, trying: Option<&str>) -> Command {
    Command::ReportFirmware {
        id: id(device),
        running: v(running),
        attempt: trying.map(|t| Attempt {
            version: v(t),
            state: AttemptState::Downloading,
        }),
    }
}

fn counts(reader: &RegistryReader) -> Vec<(String, u64)> {
    reader
        .firmware_version_counts(Some("thermo"))
        .unwrap()
        .into_iter()
        .map(
            |VersionCount {
                 version, devices, ..
             }| (version, devices),
        )
        .collect()
}

#[tokio::test]
async fn releases_reports_and_counts_survive_a_snapshot() {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let kek = Kek::from_bytes(&[9; 32]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a"), &kek).unwrap();
    let mut sm = store.state_machine().unwrap();

    let key = p256::SecretKey::from_slice(&[5; 32]).unwrap();
    let signer = FirmwareSigner {
        name: SignerName::parse("n", "acme").unwrap(),
        public_spki: key.public_key().to_public_key_der().unwrap().to_vec(),
        added_ms: 0,
    };
    let image: Vec<u8> = (0..CHUNK_SIZE * 2 + 100).map(|i| (i % 241) as u8).collect();
    let manifest = Manifest {
        vendor: "acme".into(),
        class: DeviceClass::parse("c", "thermo").unwrap(),
        version: v("1.4.2"),
        image_size: image.len() as u64,
        image_sha256: Sha256::digest(&image).into(),
        min_version: None,
        image_uri: None,
    };
    let cose =
        idreg_core::cose_sign1::sign(&manifest.encode(), key.to_pkcs8_der().unwrap().as_bytes())
            .unwrap();
    let release = ReleaseId {
        class: manifest.class.clone(),
        version: manifest.version.clone(),
    };
    let mut commands = vec![
        Command::AddFirmwareSigner(signer.clone()),
        Command::BeginFirmwareUpload {
            signer: signer.name.clone(),
            cose,
            upload: 77,
        },
    ];
    for (index, bytes) in image.chunks(CHUNK_SIZE).enumerate() {
        commands.push(Command::PutFirmwareChunk {
            release: release.clone(),
            upload: 77,
            index: index as u32,
            bytes: bytes.to_vec(),
        });
    }
    sm.apply([entry(1, commands)]).await.unwrap();
    let reader = store.reader();
    assert!(
        reader.firmware_releases(false).unwrap().is_empty(),
        "staged"
    );
    sm.apply([entry(
        2,
        vec![Command::FinishFirmwareUpload {
            release: release.clone(),
            upload: 77,
        }],
    )])
    .await
    .unwrap();
    let stored = reader.firmware_releases(false).unwrap();
    assert_eq!(stored.len(), 1);
    // A range across a chunk boundary, and the short tail.
    let r = &stored[0];
    let across = reader
        .firmware_image_range(r, CHUNK_SIZE as u64 - 10, 1024)
        .unwrap();
    assert_eq!(across, image[CHUNK_SIZE - 10..CHUNK_SIZE + 1014]);
    let tail = reader
        .firmware_image_range(r, 2 * CHUNK_SIZE as u64 + 50, 1024)
        .unwrap();
    assert_eq!(tail, image[2 * CHUNK_SIZE + 50..]);

    // Devices and reports; d1 reports twice in one entry, d3 is deleted
    // in the entry after its report.
    let labels = Labels::new("l", [(CLASS_LABEL, "thermo")]).unwrap();
    let create = |name: &str| {
        Command::Create(NewDevice {
            id: id(name),
            tenant: TenantId::default_tenant(),
            labels: labels.clone(),
            gateway: None,
            credentials: vec![],
        })
    };
    sm.apply([entry(
        3,
        vec![
            create("d1"),
            create("d2"),
            create("d3"),
            report("d1", "1.3.0", Some("1.4.2")),
            report("d1", "1.4.2", None),
            report("d2", "1.3.0", Some("1.4.2")),
            report("d3", "1.3.0", None),
        ],
    )])
    .await
    .unwrap();
    sm.apply([entry(4, vec![Command::Delete { id: id("d3") }])])
        .await
        .unwrap();
    let expect = vec![("1.3.0".to_string(), 1), ("1.4.2".to_string(), 1)];
    assert_eq!(counts(&reader), expect);
    let attempts = |r: &RegistryReader| {
        r.firmware_attempts("thermo", "1.4.2", AttemptState::Downloading)
            .unwrap()
    };
    assert_eq!(attempts(&reader), 1, "d2 only: d1's attempt ended");
    let on = |r: &RegistryReader, version: &str| -> Vec<String> {
        r.devices_on_version("thermo", version, None, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect()
    };
    assert_eq!(on(&reader, "1.3.0"), ["d2"]);
    assert_eq!(on(&reader, "1.4.2"), ["d1"]);

    // Carried by a snapshot to a fresh store.
    let other = snapshot_into(&mut sm, &dir.path().join("b"), &kek).await;
    let theirs = other.reader();
    assert_eq!(theirs.firmware_releases(false).unwrap(), stored);
    assert_eq!(
        theirs.firmware_image_range(r, 0, image.len()).unwrap(),
        image
    );
    assert_eq!(counts(&theirs), expect);
    assert_eq!(attempts(&theirs), 1);
    assert_eq!(on(&theirs, "1.3.0"), ["d2"]);
}
