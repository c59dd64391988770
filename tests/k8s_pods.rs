//! The StatefulSet, simulated: the binary runs exactly as
//! deploy/kubernetes/statefulset.yaml runs it (`serve --k8s`, the ConfigMap's
//! environment, HOSTNAME=idreg-N, POD_NAMESPACE), with the pods' DNS names
//! (idreg-N.idreg-peers.test.svc) resolved to 127.0.0.N+1 by the test-only
//! IDREG_TEST_RESOLVE override. Scale 3 -> 5 -> 3 under load, with the preStop
//! command on the way down; then a pod killed outright restarts on its volume.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use idreg_client::pb;
use idreg_proto::v1::cluster_client::ClusterClient;

struct Pods {
    dir: tempfile::TempDir,
    port: u16,
    peer_port: u16,
    kek: std::path::PathBuf,
    /// Node certificates for idreg-0..6 (node ids 1..7), as cert-manager
    /// would issue them into the Secrets the pods mount.
    pki: std::path::PathBuf,
    running: BTreeMap<u64, Server>,
}

impl Pods {
    fn addr(&self, ordinal: u64) -> String {
        format!("127.0.0.{}:{}", ordinal + 1, self.port)
    }

    async fn start(&mut self, ordinal: u64) {
        let resolve = (0..7)
            .map(|o| format!("idreg-{o}.idreg-peers.test.svc=127.0.0.{}", o + 1))
            .collect::<Vec<_>>()
            .join(",");
        let env: Vec<(String, String)> = [
            ("HOSTNAME", format!("idreg-{ordinal}")),
            ("POD_NAMESPACE", "test".into()),
            ("IDREG_K8S", "true".into()),
            ("IDREG_K8S_PEER_SERVICE", "idreg-peers".into()),
            ("IDREG_KEK_FILE", self.kek.display().to_string()),
            ("IDREG_TEST_RESOLVE", resolve),
            ("IDREG_PKI_DIR", self.pki.display().to_string()),
            (
                "IDREG_PEER_ADDR",
                format!("127.0.0.{}:{}", ordinal + 1, self.peer_port),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let data = self.dir.path().join(format!("pvc-idreg-{ordinal}"));
        let extra = vec![
            "--pki-dir".to_string(),
            self.pki.display().to_string(),
            "--peer-addr".into(),
            format!("127.0.0.{}:{}", ordinal + 1, self.peer_port),
        ];
        let s = Server::start_at_with_env(&data, &self.addr(ordinal), &extra, &env).await;
        self.running.insert(ordinal, s);
    }

    /// The preStop hook, then SIGTERM, as Kubernetes stops a pod.
    fn stop(&mut self, ordinal: u64) {
        let s = self.running.get(&ordinal).unwrap();
        // Exactly the StatefulSet's preStop command, in the pod's environment.
        let out = s.cli_in_env(&["cluster", "leave", "--k8s"]);
        assert!(out.status.success(), "preStop of idreg-{ordinal}: {out:?}");
        let mut s = self.running.remove(&ordinal).unwrap();
        assert!(s.terminate().success());
    }

    async fn status(&self, ordinal: u64) -> pb::ClusterStatus {
        let ch = crate::common::channel(&self.addr(ordinal)).await.unwrap();
        ClusterClient::new(ch)
            .get_status(pb::GetClusterStatusRequest { local_only: false })
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits (bounded) until pod `ordinal` sees exactly `voters` voters and a leader.
    async fn wait_voters(&self, ordinal: u64, voters: usize) -> pb::ClusterStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status(ordinal).await;
            let n = s.members.iter().filter(|m| m.role == "voter").count();
            if n == voters && s.members.len() == voters && s.leader_id != 0 {
                return s;
            }
            assert!(Instant::now() < deadline, "never {voters} voters: {s:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_scales_3_5_3_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    common::write_kek(&kek);
    let hosts: Vec<String> = (1..=5).map(|i| format!("127.0.0.{i}")).collect();
    let pki = dir.path().join("pki");
    let nodes: Vec<_> = (0..7)
        .map(|o| {
            let id = o + 1;
            (id, format!("idreg-{o}.idreg-peers.test.svc,127.0.0.{id}"))
        })
        .collect();
    make_pki_for(&pki, &nodes);
    let port = free_port_on_all(&hosts);
    let mut peer_port = free_port_on_all(&hosts);
    while peer_port == port {
        peer_port = free_port_on_all(&hosts);
    }
    let mut pods = Pods {
        port,
        peer_port,
        pki,
        kek,
        dir,
        running: BTreeMap::new(),
    };
    // podManagementPolicy: Parallel — all three at once, in any order.
    for o in [2, 0, 1] {
        pods.start(o).await;
    }
    let s = pods.wait_voters(0, 3).await;
    for m in &s.members {
        assert_eq!(
            m.addr,
            format!("idreg-{}.idreg-peers.test.svc:{}", m.id - 1, pods.peer_port)
        );
    }

    let endpoints = Arc::new(Mutex::new((0..3).map(|o| pods.addr(o)).collect::<Vec<_>>()));
    let stop = LoadControl::new();
    let load = tokio::spawn(write_load(
        endpoints.clone(),
        "pod",
        3,
        100_000,
        Duration::from_secs(120),
        stop.clone(),
    ));

    // kubectl scale --replicas=5
    for o in [3, 4] {
        pods.start(o).await;
    }
    pods.wait_voters(0, 5).await;
    for o in [3, 4] {
        endpoints.lock().unwrap().push(pods.addr(o));
    }
    // Writes go on through five pods before the scale-down.
    stop.wait_for_acks(20, Duration::from_secs(30)).await;

    // kubectl scale --replicas=3: the highest ordinals go, one at a time.
    for o in [4, 3] {
        let gone = pods.addr(o);
        endpoints.lock().unwrap().retain(|a| *a != gone);
        pods.stop(o);
        pods.wait_voters(0, if o == 4 { 4 } else { 3 }).await;
    }

    // A rolling restart of one pod (preStop, SIGTERM, start on its volume),
    // then one that dies outright: each rejoins as itself.
    pods.stop(1);
    pods.start(1).await;
    pods.wait_voters(1, 3).await;
    pods.running.get_mut(&2).unwrap().kill9();
    pods.running.remove(&2);
    pods.start(2).await;
    pods.wait_voters(2, 3).await;
    // Pod 0 too: it founded the cluster, but with data it rejoins, not refounds.
    pods.stop(0);
    pods.start(0).await;
    pods.wait_voters(0, 3).await;

    stop.stop();
    let rec = load.await.unwrap();
    eprintln!("pods 3-5-3: {}", rec.summary());
    assert!(rec.acked.len() > 100, "{rec:?}");
    for o in 0..3 {
        let held = all_ids_linearizable(&pods.addr(o)).await;
        assert!(
            rec.acked.is_subset(&held),
            "idreg-{o} lost acknowledged writes"
        );
        assert!(
            held.is_subset(&rec.requested),
            "idreg-{o} holds never-requested devices"
        );
    }
}
