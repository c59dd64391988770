//! A PSK secret never appears in the clear in any file under the data directory:
//! not in the raft log, the state machine, nor snapshots.

mod common;

use std::path::Path;

use common::*;
use idreg_client::pb;

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Files under `dir` that contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    files
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_secrets_are_never_written_in_the_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let kek = tmp.path().join("kek");
    common::write_kek(&kek);
    let data = tmp.path().join("node");
    // Snapshot often, so snapshot files exist to be scanned too.
    let mut server = Server::start_with(
        &data,
        &["--kek-file", kek.to_str().unwrap(), "--snapshot-every", "5"],
    )
    .await;
    let mut client = server.client().await;
    const SECRET: &[u8] = b"ZEBRA-ORCHID-7741-SECRET";
    const IDENTITY: &str = "identity-PLAINLY-STORED-9931";
    client
        .create_device(create_req(
            "secret-holder",
            vec![psk_input(IDENTITY, SECRET)],
        ))
        .await
        .unwrap();
    for i in 0..40 {
        let id = format!("filler-{i}");
        client
            .create_device(create_req(&id, vec![psk_input(&id, b"filler-secret-0123")]))
            .await
            .unwrap();
    }
    let d = client
        .get_device(pb::GetDeviceRequest {
            id: "secret-holder".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let shown = format!("{d:?}");
    assert!(
        !shown.contains("ZEBRA"),
        "GetDevice must not return the secret: {shown}"
    );

    // A clean stop flushes memtables to SST files; the WAL is there regardless.
    assert!(server.terminate().success());
    let snapshots = std::fs::read_dir(data.join("snapshots")).unwrap().count();
    assert!(snapshots > 0, "expected a snapshot file to scan");

    // The scan sees stored bytes: the identity (not secret) is found...
    assert!(
        !files_containing(&data, IDENTITY.as_bytes()).is_empty(),
        "scan found nothing at all"
    );
    // ...and the secret, in any common encoding, is not.
    for needle in [
        SECRET.to_vec(),
        hex::encode(SECRET).into_bytes(),
        b"ZEBRA-ORCHID".to_vec(),
    ] {
        let hits = files_containing(&data, &needle);
        assert!(
            hits.is_empty(),
            "secret bytes {:?} found in {hits:?}",
            String::from_utf8_lossy(&needle)
        );
    }
}
