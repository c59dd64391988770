//! Bad input over gRPC and on the CLI gets a clear error and changes nothing.

mod common;

use common::*;
use idreg_client::pb;
use tonic::Code;

async fn device_count(server: &Server) -> usize {
    let mut c = server.client().await;
    list_all_ids(&mut c, pb::ListDevicesRequest::default())
        .await
        .len()
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, needle: &str) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(
        e.message().contains(needle),
        "message {:?} should mention {needle:?}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_input_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let mut c = server.client().await;
    let (_, pubkey) = p256_key();
    let key = |pem: &str| pb::CredentialInput {
        kind: Some(pb::credential_input::Kind::PublicKeyPem(pem.into())),
    };
    c.create_device(create_req(
        "existing",
        vec![
            psk_input("taken-identity", b"0123456789abcdef"),
            key(&pubkey),
        ],
    ))
    .await
    .unwrap();
    let before = device_count(&server).await;

    expect_err(
        c.create_device(create_req("", vec![])).await,
        Code::InvalidArgument,
        "id: must not be empty",
    );
    expect_err(
        c.create_device(create_req(&"x".repeat(300), vec![])).await,
        Code::InvalidArgument,
        "id: is 300 bytes",
    );
    expect_err(
        c.create_device(create_req(
            "bad-pem",
            vec![key(
                "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----",
            )],
        ))
        .await,
        Code::InvalidArgument,
        "credentials[0].public_key_pem",
    );
    let cert = pb::CredentialInput {
        kind: Some(pb::credential_input::Kind::CertificatePem("garbage".into())),
    };
    expect_err(
        c.create_device(create_req("bad-cert", vec![cert])).await,
        Code::InvalidArgument,
        "certificate_pem",
    );
    expect_err(
        c.create_device(create_req(
            "short-psk",
            vec![psk_input("short", b"fifteen-bytes!!")],
        ))
        .await,
        Code::InvalidArgument,
        "credentials[0].psk.secret: PSK is 15 bytes",
    );
    expect_err(
        c.create_device(create_req("long-psk", vec![psk_input("long", &[b'a'; 65])]))
            .await,
        Code::InvalidArgument,
        "PSK is 65 bytes",
    );
    expect_err(
        c.create_device(create_req(
            "dup-psk",
            vec![psk_input("taken-identity", b"0123456789abcdef")],
        ))
        .await,
        Code::AlreadyExists,
        "taken-identity",
    );
    expect_err(
        c.create_device(create_req("dup-key", vec![key(&pubkey)]))
            .await,
        Code::AlreadyExists,
        "public key",
    );
    expect_err(
        c.create_device(create_req("existing", vec![])).await,
        Code::AlreadyExists,
        "existing",
    );
    expect_err(
        c.revoke_device(pb::RevokeDeviceRequest {
            id: "missing".into(),
            reason: "x".into(),
        })
        .await,
        Code::NotFound,
        "missing",
    );
    expect_err(
        c.get_device(pb::GetDeviceRequest {
            id: "missing".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "missing",
    );
    let mut bad_labels = create_req("bad-label", vec![]);
    bad_labels.labels.insert("has space".into(), "v".into());
    expect_err(
        c.create_device(bad_labels).await,
        Code::InvalidArgument,
        "labels",
    );
    expect_err(
        c.list_devices(pb::ListDevicesRequest {
            page_token: "from-nowhere".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_token",
    );
    expect_err(
        c.list_devices(pb::ListDevicesRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_size",
    );
    expect_err(
        c.list_devices(pb::ListDevicesRequest {
            labels: vec!["noequals".into()],
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "labels[0]",
    );

    // Revocation is final, and says so.
    c.revoke_device(pb::RevokeDeviceRequest {
        id: "existing".into(),
        reason: "test".into(),
    })
    .await
    .unwrap();
    let reenable = pb::UpdateDeviceRequest {
        id: "existing".into(),
        status: pb::DeviceStatus::Active as i32,
        ..Default::default()
    };
    expect_err(
        c.update_device(reenable).await,
        Code::FailedPrecondition,
        "revoked",
    );

    assert_eq!(
        device_count(&server).await,
        before,
        "failed requests changed the registry"
    );
    let d = c
        .get_device(pb::GetDeviceRequest {
            id: "existing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.status, pb::DeviceStatus::Revoked as i32);
    assert_eq!(d.revocation_reason, "test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cli_input_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let pem_file = tmp.path().join("bad.pem");
    std::fs::write(&pem_file, "not a pem").unwrap();
    let long_id = "x".repeat(300);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["device", "add", ""], "id: must not be empty"),
        (vec!["device", "add", &long_id], "is 300 bytes"),
        (
            vec![
                "device",
                "add",
                "d1",
                "--psk-identity",
                "d1",
                "--psk",
                "short",
            ],
            "PSK is 5 bytes",
        ),
        (
            vec![
                "device",
                "add",
                "d1",
                "--psk-identity",
                "d1",
                "--psk-hex",
                "zz",
            ],
            "--psk-hex",
        ),
        (
            vec!["device", "add", "d1", "--psk", "0123456789abcdef"],
            "--psk-identity",
        ),
        (
            vec![
                "device",
                "add",
                "d1",
                "--public-key",
                pem_file.to_str().unwrap(),
            ],
            "public_key_pem",
        ),
        (
            vec!["device", "add", "d1", "--public-key", "/nonexistent.pem"],
            "cannot read",
        ),
        (
            vec!["device", "add", "d1", "--label", "novalue"],
            "key=value",
        ),
        (
            vec!["device", "revoke", "missing", "--reason", "x"],
            "NotFound",
        ),
        (vec!["device", "get", "missing"], "NotFound"),
    ];
    for (args, needle) in cases {
        let out = server.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr {stderr:?} should mention {needle:?}"
        );
    }
    assert_eq!(device_count(&server).await, 0);
}
