//! 100k devices created through the API, then listed by page and by label:
//! every one seen exactly once.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use idreg_client::pb;

const DEVICES: usize = 100_000;
const WRITERS: usize = 64;
const SITES: usize = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_thousand_devices_listed_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let deadline = Instant::now() + Duration::from_secs(900);

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            for i in (w..DEVICES).step_by(WRITERS) {
                assert!(
                    Instant::now() < deadline,
                    "bulk create took longer than 15 minutes"
                );
                let mut req = create_req(&format!("dev-{i:06}"), vec![]);
                req.labels
                    .insert("site".into(), format!("site-{}", i % SITES));
                client.create_device(req).await.expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let mut client = server.client().await;
    let all = list_all_ids(
        &mut client,
        pb::ListDevicesRequest {
            page_size: 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), DEVICES);
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), DEVICES, "a device was listed twice");
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "listing is in id order"
    );

    let mut by_label = 0;
    let mut seen = HashSet::new();
    for site in 0..SITES {
        let req = pb::ListDevicesRequest {
            page_size: 777,
            labels: vec![format!("site=site-{site}")],
            ..Default::default()
        };
        let ids = list_all_ids(&mut client, req).await;
        let expected = (site..DEVICES).step_by(SITES).count();
        assert_eq!(ids.len(), expected, "site-{site}");
        for id in ids {
            let n: usize = id[4..].parse().unwrap();
            assert_eq!(n % SITES, site, "{id} listed under the wrong label");
            assert!(seen.insert(id), "listed twice across labels");
            by_label += 1;
        }
    }
    assert_eq!(by_label, DEVICES);
}
