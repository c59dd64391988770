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
    Command, DeviceClass, FirmwareCatalog, FirmwareSigner, Kek, Labels, NewDevice, SignerName,
    TenantId,
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
    let kek = Kek::from_bytes(&[9; 32]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a"), &kek).unwrap();
    let mut sm = store.state_machine().unwrap();

    let key = p256::SecretKey::from_slice(&[5; 32]).unwrap();
    let (mut upload, image) = release_commands(&key, ("thermo", "1.4.2", CHUNK_SIZE * 2 + 100, 77));
    // Staged in the first entry; finished (and rolled out) in the next.
    let finish = upload.split_off(upload.len() - 2);
    let mut commands = vec![Command::AddFirmwareSigner(signer(&key))];
    commands.extend(upload);
    sm.apply([entry(1, commands)]).await.unwrap();
    let reader = store.reader();
    assert!(
        reader.firmware_releases(false).unwrap().is_empty(),
        "staged"
    );
    sm.apply([entry(2, finish)]).await.unwrap();
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

/// The vendor `acme` with `key`.
fn signer(key: &p256::SecretKey) -> FirmwareSigner {
    use p256::pkcs8::EncodePublicKey;
    FirmwareSigner {
        name: SignerName::parse("n", "acme").unwrap(),
        public_spki: key.public_key().to_public_key_der().unwrap().to_vec(),
        added_ms: 0,
    }
}

/// The commands that stage and finish `version` of `class` (an image of
/// `size` bytes, upload `upload`) signed by `key`, and roll it out.
fn release_commands(
    key: &p256::SecretKey,
    (class, version, size, upload): (&str, &str, usize, u64),
) -> (Vec<Command>, Vec<u8>) {
    use p256::pkcs8::EncodePrivateKey;
    let image: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
    let manifest = Manifest {
        vendor: "acme".into(),
        class: DeviceClass::parse("c", class).unwrap(),
        version: v(version),
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
    let mut commands = vec![Command::BeginFirmwareUpload {
        signer: SignerName::parse("n", "acme").unwrap(),
        cose,
        upload,
    }];
    for (index, bytes) in image.chunks(CHUNK_SIZE).enumerate() {
        commands.push(Command::PutFirmwareChunk {
            release: release.clone(),
            upload,
            index: index as u32,
            bytes: bytes.to_vec(),
        });
    }
    commands.push(Command::FinishFirmwareUpload {
        release: release.clone(),
        upload,
    });
    commands.push(Command::SetRollout(idreg_core::Rollout {
        release,
        labels: vec![("site".into(), "north".into())],
        percent: 40,
        paused: false,
        created_ms: 0,
        updated_ms: 0,
    }));
    (commands, image)
}

/// `FirmwareCatalog` (what the device front's firmware desk and the
/// Firmware service read) answers the same from RocksDB and from
/// `MemRegistry`, fed the same commands.
#[tokio::test]
async fn the_in_memory_catalog_answers_as_the_store_does() {
    use idreg_core::mem::MemRegistry;
    use idreg_core::{Author, Proposal, Role};

    let kek = Kek::from_bytes(&[9; 32]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &kek).unwrap();
    let mut sm = store.state_machine().unwrap();
    let key = p256::SecretKey::from_slice(&[5; 32]).unwrap();
    let mut commands = vec![Command::AddFirmwareSigner(signer(&key))];
    let (thermo_1, image_1) = release_commands(&key, ("thermo", "1.0.0", CHUNK_SIZE * 3, 1));
    let (thermo_2, image_2) = release_commands(&key, ("thermo", "2.0.0", CHUNK_SIZE + 1, 2));
    let (pump, _) = release_commands(&key, ("pump", "1.0.0", 10, 3));
    // 1.10.0 sorts before 1.9.0 as text, after it as a version; 1.11.0 stays staged.
    let (thermo_10, _) = release_commands(&key, ("thermo", "1.10.0", 20, 4));
    let (thermo_9, _) = release_commands(&key, ("thermo", "1.9.0", 20, 5));
    let (mut staged, _) = release_commands(&key, ("thermo", "1.11.0", CHUNK_SIZE + 9, 6));
    staged.truncate(2);
    commands.extend(thermo_1);
    commands.extend(thermo_2);
    commands.extend(pump);
    commands.extend(thermo_10);
    commands.extend(thermo_9);
    commands.extend(staged);
    // Devices and their reports: replaced, deleted, with no class, with
    // attempts in both states.
    for (device, class) in [
        ("a1", Some("thermo")),
        ("a2", Some("thermo")),
        ("a3", Some("thermo")),
        ("a4", Some("thermo")),
        ("b1", Some("pump")),
        ("c1", None),
    ] {
        let mut labels = vec![("site", "north")];
        labels.extend(class.map(|c| (CLASS_LABEL, c)));
        commands.push(Command::Create(NewDevice {
            id: id(device),
            tenant: TenantId::default_tenant(),
            labels: Labels::new("l", labels).unwrap(),
            gateway: None,
            credentials: vec![],
        }));
    }
    let failed = |device: &str, running: &str, trying: &str| Command::ReportFirmware {
        id: id(device),
        running: v(running),
        attempt: Some(Attempt {
            version: v(trying),
            state: AttemptState::Failed,
        }),
    };
    commands.extend([
        report("a1", "1.0.0", Some("2.0.0")),
        report("a1", "2.0.0", None),
        report("a2", "1.0.0", Some("2.0.0")),
        failed("a3", "1.0.0", "2.0.0"),
        report("a4", "1.0.0", None),
        report("b1", "1.0.0", None),
        report("c1", "0.1.0", Some("0.2.0")),
        Command::Delete { id: id("a4") },
    ]);
    // Refused (the release has a rollout) in both: nothing changes.
    commands.push(Command::RemoveFirmwareRelease {
        release: ReleaseId {
            class: DeviceClass::parse("c", "pump").unwrap(),
            version: v("1.0.0"),
        },
    });
    let mut mem = MemRegistry::default();
    for (i, command) in commands.iter().enumerate() {
        sm.apply([entry(i as u64 + 1, vec![command.clone()])])
            .await
            .unwrap();
        let proposal = Proposal {
            at_ms: i as u64 + 1,
            by: Author::new("t", Role::Admin, 1),
            command: command.clone(),
        };
        let _ = mem.execute_effect(&proposal);
    }
    let reader = store.reader();
    let sorted = |mut v: Vec<(idreg_core::Rollout, idreg_core::FirmwareRelease)>| {
        v.sort_by(|a, b| a.0.release.cmp(&b.0.release));
        v
    };
    for class in ["thermo", "pump", "none"] {
        let class = DeviceClass::parse("c", class).unwrap();
        let ours = sorted(FirmwareCatalog::rollouts_of_class(&reader, &class).unwrap());
        let theirs = sorted(mem.rollouts_of_class(&class).unwrap());
        assert_eq!(ours, theirs, "{class}");
    }
    let thermo = DeviceClass::parse("c", "thermo").unwrap();
    let rollouts: Vec<_> = sorted(mem.rollouts_of_class(&thermo).unwrap())
        .into_iter()
        .filter(|(r, _)| ["1.0.0", "2.0.0"].contains(&r.release.version.to_string().as_str()))
        .collect();
    let versions: Vec<String> = rollouts
        .iter()
        .map(|(r, _)| r.release.version.to_string())
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"]);

    // The listings, in the same order.
    assert_eq!(
        FirmwareCatalog::firmware_signers(&reader).unwrap(),
        mem.firmware_signers().unwrap()
    );
    for staged in [false, true] {
        let ours = FirmwareCatalog::firmware_releases(&reader, staged).unwrap();
        assert_eq!(
            ours,
            mem.firmware_releases(staged).unwrap(),
            "staged {staged}"
        );
        assert_eq!(ours.len(), 5 + staged as usize, "staged {staged}");
    }
    let ours = FirmwareCatalog::rollouts(&reader).unwrap();
    assert_eq!(ours, mem.rollouts().unwrap());
    let order: Vec<String> = ours.iter().map(|r| r.release.to_string()).collect();
    assert!(
        order.iter().position(|r| r.ends_with("1.10.0"))
            < order.iter().position(|r| r.ends_with("1.9.0")),
        "{order:?}"
    );

    // The report index: counts, pages of devices, attempts.
    for class in [None, Some("thermo"), Some("pump"), Some(""), Some("none")] {
        let ours = FirmwareCatalog::firmware_version_counts(&reader, class).unwrap();
        assert_eq!(
            ours,
            mem.firmware_version_counts(class).unwrap(),
            "{class:?}"
        );
    }
    let all = mem.firmware_version_counts(None).unwrap();
    assert_eq!(all.iter().map(|c| c.devices).sum::<u64>(), 5, "{all:?}");
    for count in &all {
        for page in [1, 2, 10] {
            let mut after: Option<String> = None;
            for _ in 0..10 {
                let (c, version) = (count.class.as_str(), count.version.as_str());
                let ours = FirmwareCatalog::devices_on_version(
                    &reader,
                    c,
                    version,
                    after.as_deref(),
                    page,
                )
                .unwrap();
                let theirs = mem
                    .devices_on_version(c, version, after.as_deref(), page)
                    .unwrap();
                assert_eq!(ours, theirs, "{count:?} page {page} after {after:?}");
                match ours.last() {
                    Some(d) if ours.len() == page => after = Some(d.id.clone()),
                    _ => break,
                }
            }
        }
    }
    for (class, version) in [("thermo", "2.0.0"), ("", "0.2.0"), ("pump", "2.0.0")] {
        for state in [AttemptState::Downloading, AttemptState::Failed] {
            let ours = FirmwareCatalog::firmware_attempts(&reader, class, version, state).unwrap();
            let theirs = mem.firmware_attempts(class, version, state).unwrap();
            assert_eq!(ours, theirs, "{class} {version} {state:?}");
        }
    }
    assert_eq!(
        mem.firmware_attempts("thermo", "2.0.0", AttemptState::Downloading)
            .unwrap(),
        1
    );

    let c = CHUNK_SIZE as u64;
    for ((_, release), image) in rollouts.iter().zip([&image_1, &image_2]) {
        for (offset, len) in [
            (0, 10),
            (c - 3, 7),
            (c, CHUNK_SIZE),
            (2 * c + 5, 99),
            (c, 1 << 20),
        ] {
            let ours =
                FirmwareCatalog::firmware_image_range(&reader, release, offset, len).unwrap();
            let theirs = mem.firmware_image_range(release, offset, len).unwrap();
            assert_eq!(ours, theirs, "{offset}+{len}");
            let start = (offset as usize).min(image.len());
            let end = (offset as usize + len).min(image.len());
            assert_eq!(ours, image[start..end], "{offset}+{len}");
        }
    }
}
